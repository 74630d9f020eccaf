package krew

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// rootState is what of a KREW_ROOT makes plugins: the links in bin, the
// receipts, and the installed versions in store. An install that fails is
// undone against it, whatever krew left.
type rootState struct {
	links    map[string]string // bin entry -> link target ("" for a plain file)
	receipts map[string][]byte
	versions map[string]bool // store/<plugin>/<version>
}

func snapshot(root string) (*rootState, error) {
	s := &rootState{links: map[string]string{}, receipts: map[string][]byte{}, versions: map[string]bool{}}
	bins, err := readDir(filepath.Join(root, "bin"))
	if err != nil {
		return nil, err
	}
	for _, e := range bins {
		target, err := os.Readlink(filepath.Join(root, "bin", e.Name()))
		if err != nil && !errors.Is(err, syscall.EINVAL) {
			return nil, fmt.Errorf("krew root: %w", err)
		}
		s.links[e.Name()] = target
	}
	receipts, err := readDir(filepath.Join(root, "receipts"))
	if err != nil {
		return nil, err
	}
	for _, e := range receipts {
		data, err := os.ReadFile(filepath.Join(root, "receipts", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("krew root: %w", err)
		}
		s.receipts[e.Name()] = data
	}
	plugins, err := readDir(filepath.Join(root, "store"))
	if err != nil {
		return nil, err
	}
	for _, p := range plugins {
		versions, err := readDir(filepath.Join(root, "store", p.Name()))
		if err != nil {
			return nil, err
		}
		for _, v := range versions {
			s.versions[filepath.Join(p.Name(), v.Name())] = true
		}
	}
	return s, nil
}

// restore puts root back as s saw it: links and receipts that are new or
// changed go or get their old form back, versions that are new go.
func restore(root string, s *rootState) error {
	now, err := snapshot(root)
	if err != nil {
		return err
	}
	var errs []error
	for name, target := range now.links {
		old, had := s.links[name]
		if had && old == target {
			continue
		}
		path := filepath.Join(root, "bin", name)
		if !had {
			errs = append(errs, os.Remove(path))
			continue
		}
		tmp := path + ".restore"
		os.Remove(tmp)
		if err := os.Symlink(old, tmp); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, os.Rename(tmp, path))
	}
	for name, target := range s.links {
		if _, still := now.links[name]; !still && target != "" {
			errs = append(errs, os.Symlink(target, filepath.Join(root, "bin", name)))
		}
	}
	for name, data := range now.receipts {
		old, had := s.receipts[name]
		switch {
		case !had:
			errs = append(errs, os.Remove(filepath.Join(root, "receipts", name)))
		case !bytes.Equal(old, data):
			errs = append(errs, os.WriteFile(filepath.Join(root, "receipts", name), old, 0o644))
		}
	}
	for name, data := range s.receipts {
		if _, still := now.receipts[name]; !still {
			errs = append(errs, os.WriteFile(filepath.Join(root, "receipts", name), data, 0o644))
		}
	}
	for v := range now.versions {
		if !s.versions[v] {
			errs = append(errs, os.RemoveAll(filepath.Join(root, "store", v)))
		}
	}
	return errors.Join(errs...)
}

// readDir lists a folder; one that does not exist yet is empty.
func readDir(dir string) ([]fs.DirEntry, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("krew root: %w", err)
	}
	return entries, nil
}
