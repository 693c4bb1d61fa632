package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/garrison-mesh/garrison/ca/authority"
)

type journalReq struct {
	r    authority.Record
	done chan error
}

// maxBatch bounds one group commit.
const maxBatch = 64

var errClosed = errors.New("store closed")

// Journal records r once its transaction commits; concurrent calls share
// a transaction.
func (s *Store) Journal(ctx context.Context, r authority.Record) error {
	req := journalReq{r: r, done: make(chan error, 1)}
	select {
	case s.jq <- req:
	case <-s.closed:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		// The record may still commit; a journaled serial that was never
		// signed is harmless (it is only never reused).
		return ctx.Err()
	}
}

// groupWindow is how long, under concurrent load, the writer holds a
// batch open for more records. A commit costs about 100 µs of CPU
// whatever its size (WAL frames, locks) and about 10 µs more per record;
// at a few thousand certificates a second requests arrive further apart
// than a commit takes, so without a window nearly every batch would hold
// one record. The window opens only when signers are concurrent (the
// batch, or the one before, held more than one record): a lone caller,
// which would wait in vain, is committed at once. The wall clock is right
// here: this is about CPU scheduling, not certificate time.
const groupWindow = 500 * time.Microsecond

// writer is the journal's group commit: it takes every request waiting
// (and, under load, those arriving within groupWindow) and commits them
// in one statement.
func (s *Store) writer() {
	defer close(s.done)
	batch := make([]journalReq, 0, maxBatch)
	window := time.NewTimer(time.Hour)
	window.Stop()
	prev := 0 // the previous batch's size
	for {
		var first journalReq
		select {
		case first = <-s.jq:
		case <-s.closed:
			// Drain what was queued before Close.
			for {
				select {
				case req := <-s.jq:
					s.commit([]journalReq{req})
				default:
					return
				}
			}
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < maxBatch {
			select {
			case req := <-s.jq:
				batch = append(batch, req)
			default:
				break fill
			}
		}
		if len(batch) > 1 || prev > 1 {
			window.Reset(groupWindow)
		collect:
			for len(batch) < maxBatch {
				select {
				case req := <-s.jq:
					batch = append(batch, req)
				case <-window.C:
					break collect
				}
			}
			window.Stop()
		}
		s.commit(batch)
		prev = len(batch)
	}
}

// commit writes a batch as one multi-row INSERT, a transaction of its
// own: one statement and one commit per batch rather than per record
// (database/sql's transaction calls cost more than the inserts). When
// fewer rows than records went in, some serial was a duplicate: the
// records are then checked one by one (never seen with a working random
// source, but that is what the check is for).
func (s *Store) commit(batch []journalReq) {
	ctx := context.Background()
	n, err := s.insert(ctx, batch)
	if err == nil && n != int64(len(batch)) {
		err = s.findDuplicates(ctx, batch)
		if err == nil {
			return
		}
	}
	for _, req := range batch {
		if err != nil {
			req.done <- fmt.Errorf("journal commit: %w", err)
		} else {
			req.done <- nil
		}
	}
}

func (s *Store) insert(ctx context.Context, batch []journalReq) (int64, error) {
	stmt, err := s.insertStmt(ctx, len(batch))
	if err != nil {
		return 0, err
	}
	args := make([]any, 0, 8*len(batch))
	for _, req := range batch {
		r := req.r
		args = append(args, r.Serial.Bytes(), r.SPIFFEID, r.NotBefore.Unix(), r.NotAfter.Unix(),
			r.IssuedAt.UnixNano(), r.Caller, r.SignerID, r.RootID)
	}
	res, err := stmt.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// findDuplicates answers each record of a batch in which some serial was
// already journaled: a record whose row holds its own issuance time went
// in; any other is a duplicate.
func (s *Store) findDuplicates(ctx context.Context, batch []journalReq) error {
	seen := make(map[string]bool, len(batch))
	for _, req := range batch {
		key := string(req.r.Serial.Bytes())
		if seen[key] {
			req.done <- authority.ErrDuplicateSerial
			continue
		}
		seen[key] = true
		var at int64
		var id, caller string
		err := s.w.QueryRowContext(ctx, "SELECT issued_at, spiffe_id, caller FROM issued WHERE serial = ?", req.r.Serial.Bytes()).Scan(&at, &id, &caller)
		if err != nil {
			return err
		}
		if at == req.r.IssuedAt.UnixNano() && id == req.r.SPIFFEID && caller == req.r.Caller {
			req.done <- nil
		} else {
			req.done <- authority.ErrDuplicateSerial
		}
	}
	return nil
}

// insertStmt prepares (once per batch size) the multi-row insert.
func (s *Store) insertStmt(ctx context.Context, n int) (*sql.Stmt, error) {
	if st := s.inserts[n]; st != nil {
		return st, nil
	}
	var b strings.Builder
	b.WriteString("INSERT OR IGNORE INTO issued (serial, spiffe_id, not_before, not_after, issued_at, caller, signer_id, root_id) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?,?)")
	}
	st, err := s.w.PrepareContext(ctx, b.String())
	if err != nil {
		return nil, err
	}
	s.inserts[n] = st
	return st, nil
}

// Issued lists journal records, newest first, with their revocations.
func (s *Store) Issued(ctx context.Context, f authority.Filter) ([]authority.Record, error) {
	q := `SELECT i.serial, i.spiffe_id, i.not_before, i.not_after, i.issued_at, i.caller, i.signer_id, i.root_id,
		r.reason, r.revoked_at FROM issued i LEFT JOIN revoked r ON r.serial = i.serial`
	var where []string
	var args []any
	if f.SPIFFEID != "" {
		where, args = append(where, "i.spiffe_id = ?"), append(args, f.SPIFFEID)
	}
	if !f.ValidAt.IsZero() {
		where, args = append(where, "i.not_before <= ? AND i.not_after > ?"), append(args, f.ValidAt.Unix(), f.ValidAt.Unix())
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY i.id DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []authority.Record
	for rows.Next() {
		var (
			serial       []byte
			id, caller   string
			nb, na, at   int64
			signer, root int64
			reason       sql.NullString
			revokedAt    sql.NullInt64
		)
		if err := rows.Scan(&serial, &id, &nb, &na, &at, &caller, &signer, &root, &reason, &revokedAt); err != nil {
			return nil, err
		}
		sn := new(big.Int).SetBytes(serial)
		rec := authority.Record{Serial: sn, SPIFFEID: id, NotBefore: time.Unix(nb, 0), NotAfter: time.Unix(na, 0),
			IssuedAt: time.Unix(0, at), Caller: caller, SignerID: signer, RootID: root}
		if reason.Valid {
			rec.Revoked = &authority.Revocation{Serial: sn, Reason: reason.String, RevokedAt: time.Unix(revokedAt.Int64, 0), NotAfter: rec.NotAfter}
		}
		out = append(out, rec)
	}
	return out, rows.Err()
}

// Revoke revokes a journaled serial.
func (s *Store) Revoke(ctx context.Context, serial *big.Int, reason string, at time.Time) (bool, error) {
	key := serial.Bytes()
	var notAfter int64
	err := s.w.QueryRowContext(ctx, "SELECT not_after FROM issued WHERE serial = ?", key).Scan(&notAfter)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = s.w.ExecContext(ctx, "INSERT OR IGNORE INTO revoked(serial, reason, revoked_at, not_after) VALUES (?,?,?,?)",
		key, reason, at.Unix(), notAfter)
	return err == nil, err
}

// RevokeIdentity revokes every certificate of spiffeID unexpired at at.
func (s *Store) RevokeIdentity(ctx context.Context, spiffeID, reason string, at time.Time) ([]authority.Revocation, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	rows, err := tx.QueryContext(ctx, `SELECT i.serial, i.not_after FROM issued i
		WHERE i.spiffe_id = ? AND i.not_after > ? AND NOT EXISTS (SELECT 1 FROM revoked r WHERE r.serial = i.serial)`,
		spiffeID, at.Unix())
	if err != nil {
		return nil, err
	}
	var revs []authority.Revocation
	for rows.Next() {
		var serial []byte
		var na int64
		if err := rows.Scan(&serial, &na); err != nil {
			_ = rows.Close()
			return nil, err
		}
		revs = append(revs, authority.Revocation{Serial: new(big.Int).SetBytes(serial), Reason: reason, RevokedAt: at, NotAfter: time.Unix(na, 0)})
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, err
	}
	for _, r := range revs {
		if _, err := tx.ExecContext(ctx, "INSERT INTO revoked(serial, reason, revoked_at, not_after) VALUES (?,?,?,?)",
			r.Serial.Bytes(), reason, at.Unix(), r.NotAfter.Unix()); err != nil {
			return nil, err
		}
	}
	return revs, tx.Commit()
}

// Revocations lists revocations of certificates unexpired at now.
func (s *Store) Revocations(ctx context.Context, now time.Time) ([]authority.Revocation, error) {
	rows, err := s.w.QueryContext(ctx, "SELECT serial, reason, revoked_at, not_after FROM revoked WHERE not_after > ? ORDER BY revoked_at, serial", now.Unix())
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var out []authority.Revocation
	for rows.Next() {
		var serial []byte
		var reason string
		var at, na int64
		if err := rows.Scan(&serial, &reason, &at, &na); err != nil {
			return nil, err
		}
		out = append(out, authority.Revocation{Serial: new(big.Int).SetBytes(serial), Reason: reason, RevokedAt: time.Unix(at, 0), NotAfter: time.Unix(na, 0)})
	}
	return out, rows.Err()
}

// Counts summarises the journal at now.
func (s *Store) Counts(ctx context.Context, now time.Time) (authority.Counts, error) {
	var c authority.Counts
	err := s.r.QueryRowContext(ctx, `SELECT
		(SELECT COUNT(*) FROM issued),
		(SELECT COUNT(*) FROM issued WHERE not_after > ?),
		(SELECT COUNT(*) FROM revoked WHERE not_after > ?)`, now.Unix(), now.Unix()).Scan(&c.Issued, &c.Valid, &c.Revoked)
	return c, err
}

// LastNotAfter is the latest expiry under root rootID.
func (s *Store) LastNotAfter(ctx context.Context, rootID int64) (time.Time, error) {
	var na sql.NullInt64
	if err := s.w.QueryRowContext(ctx, "SELECT MAX(not_after) FROM issued WHERE root_id = ?", rootID).Scan(&na); err != nil {
		return time.Time{}, err
	}
	if !na.Valid {
		return time.Time{}, nil
	}
	return time.Unix(na.Int64, 0), nil
}

// NextCRLNumber increments and returns the CRL number.
func (s *Store) NextCRLNumber(ctx context.Context) (*big.Int, error) {
	var n int64
	if err := s.w.QueryRowContext(ctx, "UPDATE meta SET value = value + 1 WHERE key = 'crl_number' RETURNING value").Scan(&n); err != nil {
		return nil, err
	}
	return big.NewInt(n), nil
}
