package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/compose"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/metrics"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/mcpserver"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// execute runs the command line and returns the process's exit code.
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		var exit exitError
		if errors.As(err, &exit) {
			return exit.code
		}
		fmt.Fprintf(stderr, "Error: %v\n", err)
		return 1
	}
	return 0
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubernetes-mcp-server",
		Short: "An MCP server that runs kubectl plugins, each call in its own sandbox",
		Long: `kubernetes-mcp-server lets AI agents discover and run kubectl plugins over the
Model Context Protocol. Settings come from built-in defaults, the --config TOML
file, PLUGINS_* environment variables and flags; a flag beats the environment,
which beats the file, which beats the default. 'config show' prints the result.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd)
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().String("config", "", "TOML configuration file (default: none, embedded defaults)")
	config.AddFlags(root.PersistentFlags())
	root.AddCommand(newConfigCommand(), newPluginsCommand(), newProfileCommand(), newAuditCommand())
	return root
}

// loadConfig reads the configuration the command line points at and checks
// it as serving would: the settings, then the policy built from them.
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	file, _ := cmd.Flags().GetString("config")
	cfg, err := config.Load(config.Options{File: file, Flags: cmd.Flags()})
	if err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if _, err := compose.Policy(cfg); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%s%w", policyOrigin(cfg, err), err)
	}
	if err := checkHTTPConfig(cfg); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

// checkHTTPConfig checks the server.* keys that guard HTTP and need no
// file or network, so that config show fails on them as serving does.
func checkHTTPConfig(cfg *config.Config) error {
	h := cfg.HTTP
	if err := mcpserver.CheckOrigins(h.AllowedOrigins); err != nil {
		origin := ""
		if v := cfg.Values()["server.allowed_origins"]; v.Origin != "" {
			origin = v.Origin + ": "
		}
		return fmt.Errorf("%sserver.allowed_origins: %w", origin, err)
	}
	switch {
	case (h.OAuthIssuer == "") != (h.OAuthResource == ""):
		return fmt.Errorf("server.oauth_issuer and server.oauth_resource go together: set both for OAuth, or neither")
	case h.OAuthIssuer == "" && (len(h.OAuthAudiences) > 0 || h.OAuthJWKSURL != "" || len(h.OAuthScopes) > 0):
		return fmt.Errorf("server.oauth_audiences, oauth_jwks_url and oauth_scopes need server.oauth_issuer")
	case h.AuthTokenFile != "" && h.OAuthIssuer != "":
		return fmt.Errorf("server.auth_token_file and server.oauth_issuer exclude each other: choose a bearer token or OAuth")
	}
	return nil
}

// httpOptions reads what guards the HTTP transports (the token file, the
// OAuth issuer's keys) and refuses an address beyond loopback without
// authentication.
func httpOptions(ctx context.Context, cfg *config.Config, log hclog.Logger) (mcpserver.HTTPOptions, error) {
	h := cfg.HTTP
	opts := mcpserver.HTTPOptions{InsecureListen: h.InsecureListen}
	if len(h.AllowedOrigins) > 0 {
		opts.AllowedOrigins = h.AllowedOrigins
	}
	if h.AuthTokenFile != "" {
		token, warning, err := mcpserver.ReadTokenFile(h.AuthTokenFile)
		if err != nil {
			return opts, fmt.Errorf("server.auth_token_file: %w", err)
		}
		if warning != "" {
			log.Warn(warning)
		}
		opts.Token = token
	}
	if h.OAuthIssuer != "" {
		v, err := mcpserver.NewOAuthVerifier(ctx, mcpserver.OAuthOptions{
			Issuer: h.OAuthIssuer, Resource: h.OAuthResource, Audiences: h.OAuthAudiences,
			JWKSURL: h.OAuthJWKSURL, Scopes: h.OAuthScopes, Logger: log.Named("oauth"),
		})
		if err != nil {
			return opts, fmt.Errorf("server.oauth_issuer: %w", err)
		}
		opts.OAuth = v
	}
	if err := mcpserver.CheckExposure(cfg.Server.BindAddress, opts); err != nil {
		return opts, fmt.Errorf("%w: anyone who reaches the address could run plugins against the clusters. Set --auth-token-file FILE "+
			"(server.auth_token_file, env PLUGINS_AUTH_TOKEN_FILE) to require a bearer token, or server.oauth_issuer and "+
			"server.oauth_resource to require OAuth 2.1 access tokens, or keep --bind-address 127.0.0.1; "+
			"--insecure-listen serves it without authentication anyway", err)
	}
	if h.InsecureListen && (opts.Token != "" || opts.OAuth != nil) {
		log.Warn("server.insecure_listen has no effect: authentication is on")
	}
	return opts, nil
}

// policyOrigin names where the [plugins] key a policy error is about was
// set ("file.toml:12: "), so the operator finds it as for any other error.
func policyOrigin(cfg *config.Config, err error) string {
	msg := strings.TrimPrefix(err.Error(), "plugin policy: ")
	key, _, _ := strings.Cut(msg, ":")
	key, _, _ = strings.Cut(key, "[")
	key, _, _ = strings.Cut(key, ".")
	if v, ok := cfg.Values()["plugins."+key]; ok && v.Origin != "" {
		return v.Origin + ": "
	}
	return ""
}

func newLogger(cfg *config.Config, out io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "kubernetes-mcp-server",
		Level:      hclog.LevelFromString(cfg.Log.Level),
		JSONFormat: cfg.Log.Format == "json",
		Output:     out,
	})
}

// loadClusters is the commands' registry (plugins run, profile show, ...):
// loadClusterSources with Rancher asked once, its warnings on stderr.
func loadClusters(cfg *config.Config) (*clusters.Registry, error) {
	reg, _, err := loadClusterSources(context.Background(), cfg, newLogger(cfg, os.Stderr))
	return reg, err
}

// loadClusterSources builds the registry the configuration describes: the
// files, and with rancher_url Rancher's clusters, fetched once. A failed
// fetch is logged and reported in the registry's Sources, and the clusters
// an earlier run wrote to config_dir stay in use; it is not an error. The
// Rancher source is nil without rancher_url; serve runs its refresh loop.
func loadClusterSources(ctx context.Context, cfg *config.Config, log hclog.Logger) (*clusters.Registry, *clusters.Rancher, error) {
	c := cfg.Clusters
	var src *clusters.Rancher
	if c.RancherURL != "" {
		var err error
		src, err = clusters.NewRancher(clusters.RancherOptions{
			URL: c.RancherURL, Token: c.RancherToken, TokenFile: c.RancherTokenFile, Dir: c.ConfigDir,
			Interval: c.RefreshInterval, AutoRefresh: c.AutoRefresh, Logger: log,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("invalid configuration: %s%w", valueOrigin(cfg, "clusters.rancher_url"), err)
		}
	} else {
		for _, key := range []string{"clusters.rancher_token", "clusters.rancher_token_file"} {
			if v := cfg.Values()[key]; v.Source != config.SourceDefault {
				log.Warn(key+" is set but clusters.rancher_url is not: Rancher is not asked", "origin", v.Origin)
			}
		}
	}
	reg, err := clusters.Load(clusters.Options{
		KubeconfigDir:  c.KubeconfigDir,
		Kubeconfig:     c.Kubeconfig,
		DefaultCluster: c.DefaultCluster,
		Rancher:        src,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if src != nil {
		// A Rancher that stalls delays the start by a minute at most; the
		// refresh loop carries on from there.
		first, cancel := context.WithTimeout(ctx, time.Minute)
		src.Refresh(first) // logs and reports its own failure
		cancel()
		if d := c.DefaultCluster; d != "" && !slices.Contains(reg.Names(), d) {
			log.Warn("default_cluster is not among the clusters now; calls that name no cluster fail until it is", "default_cluster", d, "clusters", strings.Join(reg.Names(), ","))
		}
	}
	return reg, src, nil
}

// allowedNative names the native plugins policy allows somewhere.
func allowedNative(plugins []runtime.PluginInfo) []string {
	var out []string
	for _, p := range plugins {
		if p.Allowed && p.Plugin != nil && p.Kind != discovery.KindWasm {
			out = append(out, p.Name)
		}
	}
	return out
}

// valueOrigin is "file.toml:12: " for a key set in a file, else "".
func valueOrigin(cfg *config.Config, key string) string {
	if v := cfg.Values()[key]; v.Origin != "" {
		return v.Origin + ": "
	}
	return ""
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// serve loads everything, discovers the plugins and serves MCP: over stdio,
// or over HTTP (streamable HTTP at /mcp, SSE at /sse) with --port.
func serve(cmd *cobra.Command) error {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return err
	}
	log := newLogger(cfg, cmd.ErrOrStderr())
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	var httpOpts mcpserver.HTTPOptions
	if cfg.Server.Port != 0 {
		if httpOpts, err = httpOptions(cmd.Context(), cfg, log); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg, rancher, err := loadClusterSources(ctx, cfg, log)
	if err != nil {
		return err
	}
	if len(reg.Names()) == 0 && rancher == nil {
		log.Warn("no clusters configured: set clusters.kubeconfig_dir, clusters.rancher_url or --kubeconfig; plugins run without a cluster")
	}
	for _, name := range reg.Names() {
		c, _ := reg.Get(name)
		log.Info("cluster", "name", name, "server", c.Server, "source", c.Source, "default", name == reg.Default())
	}
	// Metrics are served over HTTP only; stdio has nowhere to serve them.
	var m *metrics.Metrics
	if cfg.Server.Port != 0 {
		m = metrics.New()
	}
	rt, noNative, err := buildRuntime(ctx, cfg, reg, log, true, m)
	if err != nil {
		return err
	}
	defer rt.Close()
	if !rt.Sandbox().Available {
		log.Warn(`no sandbox backend for native plugins is available: they are listed but cannot run (WebAssembly plugins do run); set [sandbox] backend = "none" to run them without a sandbox`)
	}

	if cfg.Plugins.Enabled {
		if _, err := rt.Discover(ctx); err != nil {
			return fmt.Errorf("discover plugins: %w", err)
		}
		// Under "auto" a server that found no containerd would offer
		// tools that never run; "wasm" says the operator knows.
		if native := allowedNative(rt.Plugins()); noNative != nil && cfg.Sandbox.Backend == "auto" && len(native) > 0 {
			return compose.Unservable(native, noNative)
		}
		go rt.RunDiscovery(ctx)
	} else {
		log.Warn("plugins are disabled (plugins.enabled = false): only the management tools are served")
	}
	// The server reads the clusters from the runtime as they are, and
	// updates its tools when Rancher's change.
	srv, err := mcpserver.New(mcpserver.Options{
		Runtime: rt,
		Logger:  log.Named("mcp"),
		Version: version,
		HTTP:    httpOpts,
		Metrics: metricsHandler(m),
	})
	if err != nil {
		return err
	}
	if rancher != nil {
		go rancher.Run(ctx)
	}
	log.Info("serving tools", "count", len(srv.Tools()), "tools", strings.Join(srv.Tools(), ","))
	// The transports outlive the signal: calls in flight still deliver
	// their results while the server drains.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(cmd.Context()))
	defer stopServing()
	served := make(chan error, 1)
	if cfg.Server.Port == 0 {
		log.Info("serving MCP over stdio")
		go func() { served <- srv.ServeStdio(serveCtx, cmd.InOrStdin(), cmd.OutOrStdout()) }()
	} else {
		addr := net.JoinHostPort(cfg.Server.BindAddress, strconv.Itoa(cfg.Server.Port))
		fmt.Fprintf(cmd.ErrOrStderr(), "MCP server listening:\n  streamable HTTP  http://%s/mcp\n  SSE              http://%s/sse\n  health           http://%s/health\ntools (%d): %s\n",
			addr, addr, addr, len(srv.Tools()), strings.Join(srv.Tools(), ", "))
		go func() { served <- srv.ServeHTTP(serveCtx, addr) }()
	}
	var serveErr error
	select {
	case serveErr = <-served:
		served = nil // the transport ended by itself: stdin closed, or it failed
	case <-ctx.Done():
		log.Info("shutting down: no new calls; calls in flight get the grace period", "grace", cfg.Server.ShutdownGrace)
	}
	stop()
	// Bounded: calls cancelled after the grace get a little longer to
	// remove their sandboxes and write their audit records.
	drainCtx, cancelDrain := context.WithTimeout(context.WithoutCancel(cmd.Context()), cfg.Server.ShutdownGrace+30*time.Second)
	defer cancelDrain()
	if err := srv.Shutdown(drainCtx, cfg.Server.ShutdownGrace); err != nil {
		log.Error("calls were still running when the server stopped", "error", err)
	}
	stopServing()
	if served != nil {
		serveErr = <-served
	}
	if err := rt.Close(); err != nil {
		log.Error("shutdown incomplete", "error", err)
	}
	log.Info("shut down")
	return serveErr
}

// interruptible gives a command's context an end at SIGINT or SIGTERM, so
// that a call it runs is cancelled, its sandbox removed and its record
// written, rather than the process dying mid-call.
func interruptible(cmd *cobra.Command) (stop func()) {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	cmd.SetContext(ctx)
	return stop
}

// metricsHandler is m's /metrics handler, or nil: a nil *Metrics must not
// become a non-nil interface that serves nothing.
func metricsHandler(m *metrics.Metrics) http.Handler {
	if m == nil {
		return nil
	}
	return m.Handler()
}
