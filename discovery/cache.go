package discovery

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/helpparse"
)

// cacheVersion changes whenever what is cached, or how help is parsed,
// changes; an older cache file is then ignored.
const cacheVersion = 2

// cacheEntry is what discovery learnt about one version of a plugin file.
type cacheEntry struct {
	SHA256 string `json:"sha256"`
	// Backend is the sandbox backend help ran in to its end; "" when no
	// help is known yet (not run, cut short or timed out), so it runs
	// again on the next refresh.
	Backend     string         `json:"backend,omitempty"`
	Help        helpparse.Help `json:"help"`
	HelpWarning string         `json:"help_warning,omitempty"`
}

type cacheFile struct {
	Version int                    `json:"version"`
	Entries map[string]*cacheEntry `json:"entries"`
}

func loadCache(path string) map[string]*cacheEntry {
	entries := map[string]*cacheEntry{}
	if path == "" {
		return entries
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return entries
	}
	// A map made to size spares the decoder growing it entry by entry;
	// an entry takes a few hundred bytes of the file.
	f := cacheFile{Entries: make(map[string]*cacheEntry, len(data)/400)}
	if json.Unmarshal(data, &f) != nil || f.Version != cacheVersion || f.Entries == nil {
		return entries
	}
	return f.Entries
}

// saveCache writes the cache atomically, so a crash never leaves half a file.
func saveCache(path string, entries map[string]*cacheEntry) error {
	if path == "" {
		return nil
	}
	data, err := json.Marshal(cacheFile{Version: cacheVersion, Entries: entries})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save plugin cache: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".plugins-cache-*")
	if err != nil {
		return fmt.Errorf("save plugin cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save plugin cache: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save plugin cache: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save plugin cache: %w", err)
	}
	return nil
}

// FileSHA256 is the hex SHA-256 of a file's bytes: the digest discovery
// reports, pins name and installs answer.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
