package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
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
	root.AddCommand(newConfigCommand(), newPluginsCommand())
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

// serve starts the server. Until the MCP front end lands it reports what it
// would serve and waits for SIGINT or SIGTERM.
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
	if err := cfg.WriteTOML(cmd.ErrOrStderr()); err != nil {
		return err
	}
	names := reg.Names()
	if len(names) == 0 {
		log.Warn("no clusters configured: set clusters.kubeconfig_dir or --kubeconfig")
	}
	for _, name := range names {
		c, _ := reg.Get(name)
		log.Info("cluster", "name", name, "server", c.Server, "source", c.Source, "default", name == reg.Default())
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("configuration loaded; MCP serving is not built yet, waiting for SIGINT or SIGTERM")
	<-ctx.Done()
	log.Info("shutting down")
	return nil
}
