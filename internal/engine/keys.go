package engine

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Reserved key space. Election records live under the user's key names;
// sessions live under SessionPrefix, which user keys may not use.
const (
	// ReservedPrefix starts every key Ronin writes for itself.
	ReservedPrefix = "_ronin."
	// SessionPrefix starts the key of every session record.
	SessionPrefix = ReservedPrefix + "session."
	// genesisKey marks a bucket whose history nodes can trust: it is
	// written once a TTL has passed since a node found it missing, and a
	// node acquires nothing while it is missing from its view. A bucket
	// that is new, created anew after a delete, or purged lacks it, and
	// so grants nothing until every holder of what was lost has passed its
	// deadline.
	genesisKey = ReservedPrefix + "genesis"
)

var (
	bucketNameRe = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
	keyNameRe    = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
)

// ValidateBucketName reports whether name is a bucket name NATS accepts.
func ValidateBucketName(field, name string) error {
	if !bucketNameRe.MatchString(name) {
		return fmt.Errorf("%w: %s %q: must be non-empty and use only letters, digits, '_' and '-'", ErrInvalidConfig, field, name)
	}
	return nil
}

// ValidateKeyName reports whether key is a key NATS accepts and that does not
// collide with Ronin's reserved keys.
func ValidateKeyName(field, key string) error {
	switch {
	case !keyNameRe.MatchString(key) || strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") || strings.Contains(key, ".."):
		return fmt.Errorf("%w: %s %q: must be non-empty, use only letters, digits and '-/_=.', and not start or end with '.' or hold '..'", ErrInvalidConfig, field, key)
	case strings.HasPrefix(key, ReservedPrefix):
		return fmt.Errorf("%w: %s %q: the prefix %q is reserved for Ronin", ErrInvalidConfig, field, key, ReservedPrefix)
	}
	return nil
}

// sessionKey is the store key of session id.
func sessionKey(id string) string { return SessionPrefix + id }

// sessionID returns the session id of a session key, and whether key is one.
func sessionID(key string) (string, bool) {
	return strings.CutPrefix(key, SessionPrefix)
}

// sessionValue is what a session record holds.
type sessionValue struct {
	Node string `json:"node"`
	// Leaving marks a member that drains: it keeps its leases until it has
	// handed them over, but is no longer a member for planning.
	Leaving bool `json:"leaving,omitempty"`
	// Prepares marks a node that prepares the keys planned to it before
	// their holders hand them over; Prepared lists (comma-separated) the
	// keys it has prepared and not yet taken.
	Prepares bool   `json:"prepares,omitempty"`
	Prepared string `json:"prepared,omitempty"`
	// Waiting maps keys to a candidate on the node that campaigns for
	// them while the node holds none of them (Bucket.Wait), JSON-encoded:
	// a resigning holder hands such a key straight over.
	Waiting string `json:"waiting,omitempty"`
}

// record is what an election record (a user key) holds while led.
type record struct {
	Candidate string `json:"candidate"`
	Node      string `json:"node"`
	Session   string `json:"session"`
	// Handoff marks a record the previous holder wrote over to the
	// holder's session (Bucket.HandOver): the holder adopts it from its
	// watcher instead of writing it itself.
	Handoff bool `json:"handoff,omitempty"`
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil { // only plain structs of strings and bools are encoded
		panic(fmt.Sprintf("ronin: encode %T: %v", v, err))
	}
	return b
}
