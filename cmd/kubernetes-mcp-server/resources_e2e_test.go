package main

//lint:file-ignore SA1019 MCP logging is deprecated by 2026-07-28 (SEP-2577) but still part of both revisions served; these tests check it.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// deleteRawPlugin asks the cluster, through the call's gateway, to delete
// a namespace: the read-only default denies it, and says so.
const deleteRawPlugin = `#!/bin/sh
[ "$1" = --help ] && exit 0
kubectl delete --raw /api/v1/namespaces/kube-system
exit 0
`

// Over the official Go SDK client, on both revisions, with the container
// sandbox and real kubens: a call's audit records are a resource that
// holds what the gateway decided; the profiles are one; and log
// notifications come only to a client that asked, naming a denied request.
func TestE2EResourcesAndLogging(t *testing.T) {
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	e := newE2E(t, "container", fmt.Sprintf("\n[audit]\nfile = %q\n", audit))
	if err := os.WriteFile(filepath.Join(e.dir, "kubectl-newdelete"), []byte(deleteRawPlugin), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(version, func(t *testing.T) {
			ctx := context.Background()
			var mu sync.Mutex
			var logs []*mcp.LoggingMessageParams
			client := mcp.NewClient(&mcp.Implementation{Name: "e2e-resources", Version: "1"}, &mcp.ClientOptions{
				LoggingMessageHandler: func(_ context.Context, r *mcp.LoggingMessageRequest) {
					mu.Lock()
					logs = append(logs, r.Params)
					mu.Unlock()
				},
			})
			cmd := exec.Command(binary, "--config", e.config)
			cmd.Env = e.env
			cmd.Stderr = serverLog(t)
			cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, &mcp.ClientSessionOptions{ProtocolVersion: version})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			if got := cs.InitializeResult().ProtocolVersion; got != version {
				t.Fatalf("negotiated %s, want %s", got, version)
			}

			// kubens lists alpha's namespaces; its audit records say so.
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "plugin_ns"})
			if err != nil {
				t.Fatal(err)
			}
			var r callResult
			data, _ := json.Marshal(res.StructuredContent)
			json.Unmarshal(data, &r)
			if r.ExitCode != 0 || r.Sandbox != "container" || !strings.Contains(r.Output, "kube-system") {
				t.Fatalf("plugin_ns: %+v\n%s", r, text(res))
			}
			records := readJSON[[]map[string]any](t, cs, "kubernetes-mcp-server://calls/"+r.CallID+"/audit")
			var listed, closed bool
			for _, rec := range records {
				if rec["call_id"] != r.CallID {
					t.Errorf("record of another call: %v", rec)
				}
				listed = listed || rec["type"] == "request" && rec["verb"] == "list" && rec["resource"] == "namespaces" && rec["decision"] == "allow"
				closed = closed || rec["type"] == "call" && rec["plugin"] == "ns" && rec["sandbox"] == "container" && rec["status"] == "ok"
			}
			if !listed || !closed {
				t.Errorf("audit records of %s: list namespaces %v, call line %v:\n%v", r.CallID, listed, closed, records)
			}

			profiles := readJSON[map[string]any](t, cs, "kubernetes-mcp-server://profiles")
			if b, _ := json.Marshal(profiles); !strings.Contains(string(b), `"plugin":"ns"`) || !strings.Contains(string(b), `"sandbox":"container"`) {
				t.Errorf("profiles document lacks ns in the container sandbox: %.500s", b)
			}
			ns := readJSON[map[string]any](t, cs, "kubernetes-mcp-server://clusters/beta/profiles/ns")
			if ns["cluster"] != "beta" || ns["spec"] == nil {
				t.Errorf("ns on beta: cluster %v, spec present %v", ns["cluster"], ns["spec"] != nil)
			}

			// No log notification before the client asks for them.
			params := &mcp.CallToolParams{Name: "plugin_newdelete"}
			if _, err := cs.CallTool(ctx, params); err != nil {
				t.Fatal(err)
			}
			// Ask: logging/setLevel on 2025-11-25, the request's _meta on 2026-07-28.
			if version == "2025-11-25" {
				if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
					t.Fatal(err)
				}
			} else {
				params.Meta = mcp.Meta{"io.modelcontextprotocol/logLevel": "info"}
			}
			if _, err := cs.CallTool(ctx, params); err != nil {
				t.Fatal(err)
			}
			var denied, ran int
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && (denied == 0 || ran == 0); time.Sleep(20 * time.Millisecond) {
				denied, ran = 0, 0
				mu.Lock()
				for _, l := range logs {
					m, _ := l.Data.(map[string]any)
					msg, _ := m["message"].(string)
					if l.Level == "warning" && strings.Contains(msg, "API request denied: DELETE /api/v1/namespaces/kube-system") {
						denied++
					}
					if l.Level == "info" && strings.Contains(msg, "plugin newdelete ran in sandbox container: ok") {
						ran++
					}
				}
				mu.Unlock()
			}
			mu.Lock()
			defer mu.Unlock()
			// One of each: the first call, made before asking, sent none.
			if denied != 1 || ran != 1 {
				b, _ := json.MarshalIndent(logs, "", " ")
				t.Errorf("%d denied and %d ran notifications, want 1 and 1 (none before the client asked):\n%s", denied, ran, b)
			}
		})
	}
}

func readJSON[T any](t *testing.T, cs *mcp.ClientSession, uri string) T {
	t.Helper()
	res, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: uri})
	if err != nil {
		t.Fatalf("read %s: %v", uri, err)
	}
	var v T
	if len(res.Contents) != 1 || res.Contents[0].MIMEType != "application/json" {
		t.Fatalf("read %s: %+v", uri, res.Contents)
	}
	if err := json.Unmarshal([]byte(res.Contents[0].Text), &v); err != nil {
		t.Fatalf("read %s: %v\n%s", uri, err, res.Contents[0].Text)
	}
	return v
}
