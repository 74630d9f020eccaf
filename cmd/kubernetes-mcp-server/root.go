package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/mcpserver"
)

// execute runs the command line and returns the process's exit code.
func execute(args []string, stdout, stderr io.Writer) int {
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
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
	root.AddCommand(newConfigCommand(), newPluginsCommand(), newProfileCommand())
	return root
}

// loadConfig reads the configuration the command line points at.
func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	file, _ := cmd.Flags().GetString("config")
	cfg, err := config.Load(config.Options{File: file, Flags: cmd.Flags()})
	if err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, out io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "kubernetes-mcp-server",
		Level:      hclog.LevelFromString(cfg.Log.Level),
		JSONFormat: cfg.Log.Format == "json",
		Output:     out,
	})
}

func loadClusters(cfg *config.Config) (*clusters.Registry, error) {
	reg, err := clusters.Load(clusters.Options{
		KubeconfigDir:  cfg.Clusters.KubeconfigDir,
		Kubeconfig:     cfg.Clusters.Kubeconfig,
		DefaultCluster: cfg.Clusters.DefaultCluster,
	})
	if err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return reg, nil
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
	reg, err := loadClusters(cfg)
	if err != nil {
		return err
	}
	if len(reg.Names()) == 0 {
		log.Warn("no clusters configured: set clusters.kubeconfig_dir or --kubeconfig; plugins run without a cluster")
	}
	for _, name := range reg.Names() {
		c, _ := reg.Get(name)
		log.Info("cluster", "name", name, "server", c.Server, "source", c.Source, "default", name == reg.Default())
	}
	rt, err := buildRuntime(cfg, reg, log, true)
	if err != nil {
		return err
	}
	defer rt.Close()
	if rt.Backend() == "" {
		log.Warn(`no sandbox backend is available: plugins are listed but cannot run; set [sandbox] backend = "none" to run them without a sandbox`)
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Plugins.Enabled {
		if _, err := rt.Discover(ctx); err != nil {
			return fmt.Errorf("discover plugins: %w", err)
		}
		go rt.RunDiscovery(ctx)
	} else {
		log.Warn("plugins are disabled (plugins.enabled = false): only the management tools are served")
	}
	srv, err := mcpserver.New(mcpserver.Options{
		Runtime:        rt,
		Logger:         log.Named("mcp"),
		Clusters:       reg.Names(),
		DefaultCluster: reg.Default(),
		Version:        version,
	})
	if err != nil {
		return err
	}
	log.Info("serving tools", "count", len(srv.Tools()), "tools", strings.Join(srv.Tools(), ","))
	if cfg.Server.Port == 0 {
		log.Info("serving MCP over stdio")
		err = srv.ServeStdio(ctx, cmd.InOrStdin(), cmd.OutOrStdout())
	} else {
		addr := net.JoinHostPort(cfg.Server.BindAddress, strconv.Itoa(cfg.Server.Port))
		fmt.Fprintf(cmd.ErrOrStderr(), "MCP server listening:\n  streamable HTTP  http://%s/mcp\n  SSE              http://%s/sse\n  health           http://%s/health\ntools (%d): %s\n",
			addr, addr, addr, len(srv.Tools()), strings.Join(srv.Tools(), ", "))
		err = srv.ServeHTTP(ctx, addr)
	}
	if err != nil && ctx.Err() == nil {
		return err
	}
	log.Info("shutting down")
	return nil
}
