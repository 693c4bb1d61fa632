package authority

import (
	"fmt"

	"github.com/garrison-mesh/garrison/internal/promreg"

	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Status is what `garrison ca status` shows.
type Status struct {
	TrustDomain string     `json:"trustDomain"`
	Upstream    string     `json:"upstream"`
	Sequence    uint64     `json:"sequence"`
	Signing     CertStatus `json:"signing"`
	// Pending is the signing CA of a staged root rotation.
	Pending    *CertStatus  `json:"pending,omitempty"`
	Roots      []CertStatus `json:"roots"`
	History    []CertStatus `json:"history,omitempty"`
	Counts     Counts       `json:"counts"`
	CRL        CRLStatus    `json:"crl"`
	MaxTTL     string       `json:"maxTTL"`
	DefaultTTL string       `json:"defaultTTL"`
	Now        time.Time    `json:"now"`
}

// CertStatus describes one CA certificate.
type CertStatus struct {
	ID          int64     `json:"id"`
	Role        Role      `json:"role"`
	State       CAState   `json:"state"`
	Subject     string    `json:"subject"`
	Serial      string    `json:"serial"`
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	Fingerprint string    `json:"sha256"`
	HasKey      bool      `json:"hasKey"`
	// ActivateAt is when a pending record starts signing.
	ActivateAt *time.Time `json:"activateAt,omitempty"`
}

// CRLStatus describes the current CRL.
type CRLStatus struct {
	Number     string    `json:"number"`
	ThisUpdate time.Time `json:"thisUpdate"`
	NextUpdate time.Time `json:"nextUpdate"`
	Entries    int       `json:"entries"`
	Available  bool      `json:"available"`
}

// Status reports the CA's state.
func (a *Authority) Status(ctx context.Context) (Status, error) {
	st := a.cur.Load()
	now := a.cfg.Clock()
	counts, err := a.cfg.Store.Counts(ctx, now)
	if err != nil {
		return Status{}, err
	}
	s := Status{
		TrustDomain: a.td.Name(), Upstream: a.cfg.Upstream.Name(), Sequence: st.seq, Counts: counts,
		MaxTTL: a.cfg.MaxTTL.String(), DefaultTTL: a.cfg.DefaultTTL.String(), Now: now,
		CRL: CRLStatus{ThisUpdate: st.crlThis, NextUpdate: st.crlNext, Entries: st.revCount, Available: st.crl != nil},
	}
	if st.crlNumber != nil {
		s.CRL.Number = st.crlNumber.String()
	}
	for _, r := range st.records {
		cs := CertStatus{
			ID: r.ID, Role: r.Role, State: r.State, Subject: r.Cert.Subject.String(), Serial: FormatSerial(r.Cert.SerialNumber),
			NotBefore: r.Cert.NotBefore, NotAfter: r.Cert.NotAfter, Fingerprint: Fingerprint(r.Cert), HasKey: r.Key != nil,
		}
		if r.State == StatePending {
			at := r.ActivateAt
			cs.ActivateAt = &at
		}
		switch {
		case r.Role == RoleSigning && r.State == StateActive:
			s.Signing = cs
		case r.Role == RoleRoot && r.State != StateRetired:
			s.Roots = append(s.Roots, cs)
		case r.Role == RoleSigning && r.State == StatePending:
			s.Pending = &cs
		default:
			s.History = append(s.History, cs)
		}
	}
	return s, nil
}

// List returns journal records, newest first, with their revocations.
func (a *Authority) List(ctx context.Context, f Filter) ([]Record, error) {
	recs, err := a.cfg.Store.Issued(ctx, f)
	if err != nil {
		return nil, err
	}
	return recs, nil
}

type metrics struct {
	rotations *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, a *Authority) (*metrics, error) {
	m := &metrics{rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "garrison_ca_rotations_total",
		Help: "Rotations of the signing CA, by kind (intermediate or root).",
	}, []string{"kind"})}
	if reg == nil {
		return m, nil
	}
	err := promreg.RegisterAll(reg,
		m.rotations,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "garrison_ca_root_expiry_seconds",
			Help: "Seconds until the active root certificate expires.",
		}, func() float64 {
			st := a.cur.Load()
			return st.roots[0].NotAfter.Sub(a.cfg.Clock()).Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "garrison_ca_signing_ca_expiry_seconds",
			Help: "Seconds until the signing (intermediate) CA certificate expires.",
		}, func() float64 {
			return a.cur.Load().signer.cert.NotAfter.Sub(a.cfg.Clock()).Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "garrison_ca_trusted_roots",
			Help: "Roots in the trust bundle (more than one during a root rotation).",
		}, func() float64 { return float64(len(a.cur.Load().roots)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "garrison_ca_revoked_certificates",
			Help: "Revoked certificates not yet expired (the CRL's entries).",
		}, func() float64 { return float64(a.cur.Load().revCount) }),
	)
	if err != nil {
		return nil, fmt.Errorf("authority: %w", err)
	}
	return m, nil
}
