package agent

import (
	"github.com/garrison-mesh/garrison/internal/atomicfile"

	"bytes"
	"os"
	"path/filepath"

	"github.com/garrison-mesh/garrison/ca/sds"
)

// The files of Config.CertDir, named as Istio's agent writes them
// (OUTPUT_CERTS) and as a gRPC xDS bootstrap's file_watcher certificate
// provider points at them (certificate_file, private_key_file,
// ca_certificate_file).
const (
	CertChainFile = "cert-chain.pem"
	KeyFile       = "key.pem"
	RootCertFile  = "root-cert.pem"
)

// writeFiles writes what changed. gRPC-Go's file_watcher provider
// (credentials/tls/certprovider/pemfile) re-reads the files every
// refresh_interval: it reads the chain, then the key, and keeps its old
// pair when they do not match, so a read between the two renames costs one
// interval, never a broken handshake. Each file is replaced by a rename, so
// no reader ever sees half a file; the key goes first so that a chain on
// disk is never newer than its key for long.
func (a *Agent) writeFiles(w sds.Workload) {
	if a.cfg.CertDir == "" {
		return
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KeyFile, w.KeyPEM, 0o600},
		{CertChainFile, w.CertChainPEM, 0o644},
		{RootCertFile, w.RootsPEM, 0o644},
	} {
		if len(f.data) == 0 || bytes.Equal(a.written[f.name], f.data) {
			continue
		}
		if err := atomicfile.Write(filepath.Join(a.cfg.CertDir, f.name), f.data, f.mode); err != nil {
			a.logFailure(&a.fileLog, "cannot write certificate file", err, "file", f.name)
			continue
		}
		a.written[f.name] = f.data
	}
}
