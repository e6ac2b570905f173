package queue

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/google/uuid"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// A delivery record is stored in a compact binary form (recordV1): one
// record per delivery sits in the LSM tree, and every compaction moves it,
// so its size is most of what a backlog costs the tree. Records an older
// version stored as JSON (they start with '{') are still read.
//
//	recordV1
//	hook, user, type, occ    uvarint length + bytes
//	event                    1 byte kind: 0, then the UUID's 16 bytes; or 1, then uvarint length + bytes
//	key                      1 byte kind: 0 none; 1, then the SHA-256's 32 bytes; 2, then uvarint length + bytes
//	state                    1 byte (states below)
//	attempts, logged         uvarint
//	created, due, expires    varint (unix ms)
const recordV1 = 1

// stateCodes are the stored codes of delivery states.
var stateCodes = []string{webhook.StateReady, webhook.StateLeased, webhook.StateDelivered, webhook.StateDead, StateHeld}

var errBadRecord = errors.New("malformed delivery record")

func (r record) encode() ([]byte, error) {
	state := -1
	for i, s := range stateCodes {
		if s == r.State {
			state = i
		}
	}
	if state < 0 {
		return nil, fmt.Errorf("delivery record: unknown state %q", r.State)
	}
	b := make([]byte, 0, 96)
	b = append(b, recordV1)
	for _, s := range []string{r.Hook, r.User, r.Type, r.Occ} {
		b = appendString(b, s)
	}
	if u, err := uuid.Parse(r.Event); err == nil && u.String() == r.Event {
		b = append(append(b, 0), u[:]...)
	} else {
		b = appendString(append(b, 1), r.Event)
	}
	switch k, err := hex.DecodeString(r.Key); {
	case r.Key == "":
		b = append(b, 0)
	case err == nil && len(k) == 32 && hex.EncodeToString(k) == r.Key:
		b = append(append(b, 1), k...)
	default:
		b = appendString(append(b, 2), r.Key)
	}
	b = append(b, byte(state))
	b = binary.AppendUvarint(b, uint64(max(r.Attempts, 0)))
	b = binary.AppendUvarint(b, uint64(max(r.Logged, 0)))
	b = binary.AppendVarint(b, r.Created)
	b = binary.AppendVarint(b, r.Due)
	b = binary.AppendVarint(b, r.Expires)
	return b, nil
}

func decodeRecord(b []byte) (record, error) {
	var r record
	if len(b) > 0 && b[0] == '{' {
		err := json.Unmarshal(b, &r)
		return r, err
	}
	d := decoder{b: b}
	if d.byte() != recordV1 {
		return r, errBadRecord
	}
	r.Hook, r.User, r.Type, r.Occ = d.string(), d.string(), d.string(), d.string()
	switch d.byte() {
	case 0:
		var u uuid.UUID
		copy(u[:], d.take(16))
		r.Event = u.String()
	case 1:
		r.Event = d.string()
	default:
		d.err = errBadRecord
	}
	switch d.byte() {
	case 0:
	case 1:
		r.Key = hex.EncodeToString(d.take(32))
	case 2:
		r.Key = d.string()
	default:
		d.err = errBadRecord
	}
	if s := int(d.byte()); s < len(stateCodes) {
		r.State = stateCodes[s]
	} else {
		d.err = errBadRecord
	}
	r.Attempts, r.Logged = int(d.uvarint()), int(d.uvarint())
	r.Created, r.Due, r.Expires = d.varint(), d.varint(), d.varint()
	if d.err == nil && len(d.b) != 0 {
		d.err = errBadRecord
	}
	return r, d.err
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// decoder reads a binary record; the first error sticks and reads after it
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		d.err = errBadRecord
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if v := d.take(1); len(v) == 1 {
		return v[0]
	}
	return 0
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.take(int(d.uvarint()))) }

func getRecord(txn *badger.Txn, id string) (record, error) {
	var rec record
	item, err := txn.Get(keyRecord(id))
	if err != nil {
		return rec, err
	}
	err = item.Value(func(v []byte) error {
		rec, err = decodeRecord(v)
		return err
	})
	return rec, err
}

func putRecord(txn *badger.Txn, id string, rec record) error {
	enc, err := rec.encode()
	if err != nil {
		return err
	}
	return txn.Set(keyRecord(id), enc)
}
