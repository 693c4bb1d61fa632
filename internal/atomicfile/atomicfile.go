// Package atomicfile replaces a file so that a reader or a crash sees the
// old content or the new, never half of it: the data goes to a temporary
// file beside the target, which gets its mode before any data is written
// (a private key is never readable by others, even briefly), is flushed,
// renamed over the target, and the rename made durable. The CA's keys and
// token file, the agent's certificate files, the config source's last good
// copies and compiled bundles are all written this way.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data, created with mode.
func Write(path string, data []byte, mode os.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	// A failure here leaves a complete file; only the rename's durability
	// across a power loss is in doubt.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
