package runtime

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/krew"
)

// ErrInstallOff refuses installs where the operator did not turn them on.
var ErrInstallOff = errors.New("installing plugins is off: the operator must set [plugins] allow_install = true (env PLUGINS_ALLOW_INSTALL)")

// InstallResult is what an install did and what discovery made of it.
type InstallResult struct {
	krew.Result
	// Plugin is the installed plugin as discovery serves it now, or nil
	// when discovery does not see it.
	Plugin *PluginInfo `json:"plugin,omitempty"`
	// ShadowedBy is the file of the same name found earlier in the search
	// path, which is the one that runs; "" when the installed one runs.
	ShadowedBy string `json:"shadowed_by,omitempty"`
	// Changes are what discovery found changed after the install.
	Changes []discovery.Event `json:"changes"`
}

// InstallEnabled reports whether installs are on.
func (r *Runtime) InstallEnabled() bool { return r.installer != nil }

// InstallIndexes are the krew indexes installs may come from.
func (r *Runtime) InstallIndexes() []string {
	if r.installer == nil {
		return nil
	}
	return r.installer.Indexes()
}

// Install installs or updates one plugin with krew, refreshes discovery
// (so that clients are told the tool list changed) and audits it. A
// plugin policy would not let run anywhere is refused before anything is
// downloaded; an install that fails changes nothing.
func (r *Runtime) Install(ctx context.Context, req krew.Request) (*InstallResult, error) {
	if r.installer == nil {
		return nil, ErrInstallOff
	}
	if err := r.beginCall(); err != nil {
		return nil, err
	}
	defer r.calls.Done()
	started := time.Now()
	index, name, err := r.installer.Target(req)
	if err != nil {
		return nil, r.auditInstall(started, req, index, name, nil, fmt.Errorf("install refused: %w", err))
	}
	if d := r.policy.DecideInstall(name); !d.Allowed {
		return nil, r.auditInstall(started, req, index, name, nil, fmt.Errorf("install refused: %s; installing it would serve nothing", d.Reason))
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(r.base, func() { cancel(context.Cause(r.base)) })
	defer stop()
	res, err := r.installer.Install(ctx, req)
	if err != nil {
		return nil, r.auditInstall(started, req, index, name, nil, fmt.Errorf("install of %q failed, nothing changed: %w", name, err))
	}
	out := &InstallResult{Result: res}
	// A fresh context: the plugin is in place whether or not the caller
	// still waits, and the tool list should say so.
	events, derr := r.Discover(context.WithoutCancel(ctx))
	out.Changes = events
	if out.Changes == nil {
		out.Changes = []discovery.Event{}
	}
	if derr != nil {
		r.log.Warn("discovery after an install did not finish", "plugin", name, "error", derr)
	}
	if p, err := r.discovery.Get(name); err == nil {
		if same(p.Path, res.Path) {
			info := r.info(p)
			out.Plugin = &info
		} else {
			out.ShadowedBy = p.Path
		}
	}
	return out, r.auditInstall(started, req, index, name, out, nil)
}

// Summary says in one line what an install did, for people and the model
// alike.
func (res *InstallResult) Summary() string {
	from := "from a manifest"
	if res.Index != "" {
		from = "from index " + res.Index
	}
	var s string
	switch res.Outcome {
	case "updated":
		s = fmt.Sprintf("Updated %s from %s to %s %s.", res.Name, res.PreviousVersion, res.Version, from)
	case "already_installed":
		s = fmt.Sprintf("%s %s is installed already; pass update to install its newest version.", res.Name, res.Version)
	case "up_to_date":
		s = fmt.Sprintf("%s %s is the newest version %s.", res.Name, res.Version, from)
	default:
		s = fmt.Sprintf("Installed %s %s %s.", res.Name, res.Version, from)
	}
	switch {
	case res.ShadowedBy != "":
		s += fmt.Sprintf(" It does not run: %s, found earlier in the search path, has its name.", res.ShadowedBy)
	case res.Plugin == nil:
		s += " Discovery does not see it: check plugins_list's warnings."
	case !res.Plugin.Allowed:
		s += " It may not run: " + res.Plugin.PolicyReason + "."
	case res.Plugin.ToolName != "":
		s += " Tool " + res.Plugin.ToolName + " runs it."
	}
	return s
}

func same(a, b string) bool {
	if a == b {
		return true
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ra == rb
}

// installLine is the audit record of one install, refused, failed or done.
type installLine struct {
	Type          string    `json:"type"` // "install"
	Time          time.Time `json:"time"`
	Plugin        string    `json:"plugin"`
	Index         string    `json:"index,omitempty"`
	Manifest      string    `json:"manifest,omitempty"`
	Update        bool      `json:"update,omitempty"`
	Outcome       string    `json:"outcome"` // installed, updated, already_installed, up_to_date, failed
	Version       string    `json:"version,omitempty"`
	SHA256        string    `json:"sha256,omitempty"`
	ArchiveSHA256 string    `json:"archive_sha256,omitempty"`
	DurationMS    int64     `json:"duration_ms"`
	Error         string    `json:"error,omitempty"`
}

// auditInstall records an install and returns its error, or the audit's
// when the record of a finished install could not be written.
func (r *Runtime) auditInstall(started time.Time, req krew.Request, index, name string, res *InstallResult, failure error) error {
	line := installLine{Type: "install", Time: started.UTC(), Plugin: name, Index: index, Manifest: req.Manifest,
		Update: req.Update, DurationMS: time.Since(started).Milliseconds(), Outcome: "failed"}
	if line.Plugin == "" {
		line.Plugin = req.Plugin
	}
	if failure != nil {
		line.Error = failure.Error()
	}
	if res != nil {
		line.Outcome, line.Version, line.SHA256, line.ArchiveSHA256 = res.Outcome, res.Version, res.SHA256, res.ArchiveSHA256
		line.Index = res.Index
	}
	r.metrics.Installed(line.Outcome)
	if err := r.audit.write(line); err != nil {
		r.log.Error("install not audited", "plugin", line.Plugin, "outcome", line.Outcome, "error", err)
		if failure == nil {
			return fmt.Errorf("plugin %q was installed, but its audit record could not be written: %w", name, err)
		}
	} else {
		r.log.Info("install audited", "plugin", line.Plugin, "index", line.Index, "outcome", line.Outcome, "version", line.Version)
	}
	return failure
}
