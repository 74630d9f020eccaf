package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/krew"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

func newPluginsInstallCommand() *cobra.Command {
	var output, manifest, archive string
	var update bool
	cmd := &cobra.Command{
		Use:   "install [INDEX/]NAME | --manifest FILE [--archive FILE]",
		Short: "Install a plugin with krew, from an allowed index or offline",
		Long: `Install a kubectl plugin with krew into the server's own krew root
(plugins.krew_root), as the plugins_install tool does. NAME comes from the
index named "default" in plugins.krew_indexes, or the only one there;
INDEX/NAME names the index. --manifest FILE (and --archive FILE) installs
offline: krew checks the archive's sha256 against the manifest. --update
installs the newest version of a plugin installed already.

Installing needs [plugins] allow_install = true. An installed plugin runs only
where policy allows it, and a failed install changes nothing. A server
running beside this command sees the plugin at its next discovery
(refresh_interval, or the plugins_discover tool).`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case manifest == "" && len(args) != 1:
				return fmt.Errorf("name one plugin, as NAME or INDEX/NAME, or give --manifest FILE")
			case manifest != "" && len(args) != 0:
				return fmt.Errorf("give a plugin name or --manifest, not both")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output must be text or json, not %q", output)
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if !cfg.Plugins.AllowInstall {
				return runtime.ErrInstallOff
			}
			rt, err := newRuntimeWith(cmd, cfg, nil)
			if err != nil {
				return err
			}
			defer rt.Close()
			req := krew.Request{Update: update, Manifest: manifest, Archive: archive}
			if len(args) == 1 {
				req.Plugin = args[0]
			}
			res, err := rt.Install(cmd.Context(), req)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			writeInstallResult(cmd.OutOrStdout(), res)
			return nil
		},
	}
	cmd.Flags().BoolVar(&update, "update", false, "Install the newest version if the plugin is installed already")
	cmd.Flags().StringVar(&manifest, "manifest", "", "Install offline from this krew manifest")
	cmd.Flags().StringVar(&archive, "archive", "", "The plugin's archive, for --manifest (checked against the manifest's sha256)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "Output format: text or json")
	return cmd
}

func writeInstallResult(out io.Writer, res *runtime.InstallResult) {
	fmt.Fprintln(out, res.Summary())
	fmt.Fprintf(out, "  path:    %s\n  sha256:  %s\n", res.Path, res.SHA256)
	if res.ArchiveSHA256 != "" {
		fmt.Fprintf(out, "  archive: sha256 %s\n", res.ArchiveSHA256)
	}
}
