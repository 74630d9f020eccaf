// Package images builds and locates the root filesystems the sandboxes run plugins in.
package images
