package gateway

import (
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// BenchmarkAddedLatency compares GET /api/v1/namespaces/<ns> straight to the
// API server with the same request through the gateway (allow-all Decider),
// both over kept-alive client-go transports, interleaved in one run. It
// reports the p50, p95 and p99 of each and of what the gateway adds: the
// differences of each gateway request and the direct one beside it (a
// difference of two p99s can come out below zero). Goal: at most 0.5 ms
// at p50, 1 ms at p99.
func BenchmarkAddedLatency(b *testing.B) {
	const samples = 1000 // so the p99 is the tenth slowest, not one outlier
	c := testenv.TestClusters(b).All[0]
	s := serveCluster(b, c, allowAll)
	path := "/api/v1/namespaces/" + c.Namespace

	client := func(cfg *rest.Config) *http.Client {
		tr, err := rest.TransportFor(cfg)
		if err != nil {
			b.Fatal(err)
		}
		return &http.Client{Transport: tr, Timeout: 10 * time.Second}
	}
	direct, gateway := client(c.REST), client(s.rest)
	get := func(cl *http.Client, url string) time.Duration {
		start := time.Now()
		resp, err := cl.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	directURL, gatewayURL := c.Server+path, "https://"+s.addr+path
	for range 20 { // warm up connections on both paths
		get(direct, directURL)
		get(gateway, gatewayURL)
	}

	var d, g []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N || len(d) < samples; i++ {
		if i%2 == 0 {
			d = append(d, get(direct, directURL))
			g = append(g, get(gateway, gatewayURL))
		} else {
			g = append(g, get(gateway, gatewayURL))
			d = append(d, get(direct, directURL))
		}
	}
	b.StopTimer()

	added := make([]time.Duration, len(d))
	for i := range d {
		added[i] = g[i] - d[i]
	}
	dp50, dp95, dp99 := percentile(d, 50), percentile(d, 95), percentile(d, 99)
	gp50, gp95, gp99 := percentile(g, 50), percentile(g, 95), percentile(g, 99)
	ap50, ap95, ap99 := percentile(added, 50), percentile(added, 95), percentile(added, 99)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	b.ReportMetric(ms(dp50), "direct-p50-ms")
	b.ReportMetric(ms(dp95), "direct-p95-ms")
	b.ReportMetric(ms(dp99), "direct-p99-ms")
	b.ReportMetric(ms(gp50), "gateway-p50-ms")
	b.ReportMetric(ms(gp95), "gateway-p95-ms")
	b.ReportMetric(ms(gp99), "gateway-p99-ms")
	b.ReportMetric(ms(ap50), "added-p50-ms")
	b.ReportMetric(ms(ap95), "added-p95-ms")
	b.ReportMetric(ms(ap99), "added-p99-ms")
	b.Logf("%d requests each: direct p50 %.3f ms p95 %.3f ms p99 %.3f ms; gateway p50 %.3f ms p95 %.3f ms p99 %.3f ms; added p50 %.3f ms p95 %.3f ms p99 %.3f ms",
		len(d), ms(dp50), ms(dp95), ms(dp99), ms(gp50), ms(gp95), ms(gp99), ms(ap50), ms(ap95), ms(ap99))
	s.audit.wait(b, len(g)+20) // every request through the gateway is audited
}

func percentile(xs []time.Duration, p int) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i]
}
