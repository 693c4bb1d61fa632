package store

import (
	"github.com/garrison-mesh/garrison/internal/atomicfile"

	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/garrison-mesh/garrison/ca/authority"
)

// pbkdf2Iterations follows OWASP's 2023 advice for PBKDF2-HMAC-SHA256;
// keys are decrypted only at start and rotation.
const pbkdf2Iterations = 600_000

const encryptedKeyType = "GARRISON ENCRYPTED PRIVATE KEY"

// CAs loads every CA record; keys of retired records are not loaded
// (nothing signs with them again).
func (s *Store) CAs(ctx context.Context) ([]authority.CARecord, error) {
	rows, err := s.w.QueryContext(ctx, "SELECT id, role, cert, chain, key_file, root_id, state, created_at, state_at, activate_at FROM cas ORDER BY id")
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []authority.CARecord
	for rows.Next() {
		var (
			rec             authority.CARecord
			certDER, chain  []byte
			keyFile         sql.NullString
			rootID          sql.NullInt64
			created, stated int64
			activate        int64
		)
		if err := rows.Scan(&rec.ID, &rec.Role, &certDER, &chain, &keyFile, &rootID, &rec.State, &created, &stated, &activate); err != nil {
			return nil, err
		}
		if rec.Cert, err = x509.ParseCertificate(certDER); err != nil {
			return nil, fmt.Errorf("CA record %d: %w", rec.ID, err)
		}
		if len(chain) > 0 {
			if rec.Chain, err = x509.ParseCertificates(chain); err != nil {
				return nil, fmt.Errorf("CA record %d chain: %w", rec.ID, err)
			}
		}
		rec.RootID = rootID.Int64
		rec.CreatedAt, rec.StateAt = time.Unix(0, created), time.Unix(0, stated)
		if activate != 0 {
			rec.ActivateAt = time.Unix(0, activate)
		}
		if keyFile.Valid && rec.State != authority.StateRetired {
			if rec.Key, err = s.readKey(keyFile.String); err != nil {
				return nil, fmt.Errorf("CA record %d key: %w", rec.ID, err)
			}
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// SaveCAs writes the keys of new records to files first, then records
// and state changes in one transaction: a crash in between leaves an
// unreferenced key file, never a record without its key.
func (s *Store) SaveCAs(ctx context.Context, add []authority.CARecord, states map[int64]authority.CAState, at time.Time) ([]int64, error) {
	files := make([]sql.NullString, len(add))
	for i, r := range add {
		if r.Key == nil {
			continue
		}
		name, err := s.writeKey(r.Role, r.Key)
		if err != nil {
			return nil, err
		}
		files[i] = sql.NullString{String: name, Valid: true}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	for id, st := range states {
		if _, err := tx.ExecContext(ctx, "UPDATE cas SET state = ?, state_at = ? WHERE id = ?", st, at.UnixNano(), id); err != nil {
			return nil, err
		}
	}
	ids := make([]int64, len(add))
	firstRoot := int64(-1)
	for i, r := range add {
		var chain []byte
		for _, c := range r.Chain {
			chain = append(chain, c.Raw...)
		}
		var rootID sql.NullInt64
		if r.Role == authority.RoleSigning {
			rootID = sql.NullInt64{Int64: r.RootID, Valid: true}
			if r.RootID < 0 {
				if firstRoot < 0 {
					return nil, errors.New("signing record refers to a root added in the same call, but none was")
				}
				rootID.Int64 = firstRoot
			}
		}
		var activate int64
		if !r.ActivateAt.IsZero() {
			activate = r.ActivateAt.UnixNano()
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO cas(role, cert, chain, key_file, root_id, state, created_at, state_at, activate_at) VALUES (?,?,?,?,?,?,?,?,?)",
			r.Role, r.Cert.Raw, chain, files[i], rootID, r.State, r.CreatedAt.UnixNano(), at.UnixNano(), activate)
		if err != nil {
			return nil, err
		}
		if ids[i], err = res.LastInsertId(); err != nil {
			return nil, err
		}
		if r.Role == authority.RoleRoot && firstRoot < 0 {
			firstRoot = ids[i]
		}
	}
	return ids, tx.Commit()
}

// writeKey writes key to keys/<role>-<fingerprint>.key, mode 0600,
// through a temporary file, fsynced: a key must be on disk before a
// record names it.
func (s *Store) writeKey(role authority.Role, key crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", err
	}
	spki, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(spki)
	name := string(role) + "-" + hex.EncodeToString(sum[:8]) + ".key"
	block := &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	if len(s.cfg.Passphrase) > 0 {
		if block, err = encryptKey(der, s.cfg.Passphrase); err != nil {
			return "", err
		}
	}
	path := filepath.Join(s.cfg.Dir, "keys", name)
	if err := atomicfile.Write(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", err
	}
	return name, nil
}

func (s *Store) readKey(name string) (crypto.Signer, error) {
	data, err := os.ReadFile(filepath.Join(s.cfg.Dir, "keys", filepath.Base(name)))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: not PEM", name)
	}
	der := block.Bytes
	if block.Type == encryptedKeyType {
		if len(s.cfg.Passphrase) == 0 {
			return nil, fmt.Errorf("%s is encrypted: a passphrase is needed (--ca-key-passphrase-file)", name)
		}
		if der, err = decryptKey(block, s.cfg.Passphrase); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T is not a signing key", name, k)
	}
	return signer, nil
}

func encryptKey(der, pass []byte) (*pem.Block, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	gcm, err := keyCipher(pass, salt, pbkdf2Iterations)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return &pem.Block{
		Type: encryptedKeyType,
		Headers: map[string]string{
			"KDF": "PBKDF2-SHA256", "Iterations": strconv.Itoa(pbkdf2Iterations),
			"Salt": hex.EncodeToString(salt), "Cipher": "AES-256-GCM",
		},
		Bytes: gcm.Seal(nonce, nonce, der, []byte(encryptedKeyType)),
	}, nil
}

func decryptKey(block *pem.Block, pass []byte) ([]byte, error) {
	salt, err := hex.DecodeString(block.Headers["Salt"])
	if err != nil {
		return nil, err
	}
	iter, err := strconv.Atoi(block.Headers["Iterations"])
	if err != nil || iter < 1 {
		return nil, errors.New("bad Iterations header")
	}
	gcm, err := keyCipher(pass, salt, iter)
	if err != nil {
		return nil, err
	}
	if len(block.Bytes) < gcm.NonceSize() {
		return nil, errors.New("ciphertext too short")
	}
	nonce, ct := block.Bytes[:gcm.NonceSize()], block.Bytes[gcm.NonceSize():]
	der, err := gcm.Open(nil, nonce, ct, []byte(encryptedKeyType))
	if err != nil {
		return nil, errors.New("wrong passphrase or corrupted key file")
	}
	return der, nil
}

func keyCipher(pass, salt []byte, iter int) (cipher.AEAD, error) {
	k, err := pbkdf2.Key(sha256.New, string(bytes.TrimSpace(pass)), salt, iter, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
