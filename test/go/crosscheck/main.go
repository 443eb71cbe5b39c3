// Command crosscheck checks aztp-client's transparency-log formats with Go's own
// implementation of them, golang.org/x/mod/sumdb/tlog (the RFC 6962 tree of Go's checksum
// database) and golang.org/x/mod/sumdb/note (signed notes), which we did not write.
//
// It reads a JSON request on stdin: the log's leaves (entry lines), the roots and proofs our
// implementation made, and signed notes with the keys that signed them. It answers on stdout
// with what Go computes itself (roots, proofs) and its verdict on each of ours.
//
// Run in GOPATH mode against Debian's golang-golang-x-mod-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run ./test/go/crosscheck
package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Proof [][]byte `json:"proof"`
}

type consistency struct {
	From  int64    `json:"from"`
	To    int64    `json:"to"`
	Proof [][]byte `json:"proof"`
}

type signedNote struct {
	Note string `json:"note"`
	Name string `json:"name"`
	// ECDSA (type 0x02): the DER SubjectPublicKeyInfo; cosignature (type 0x04): the 32-byte key.
	Key  []byte `json:"key"`
	Kind string `json:"kind"`
}

type request struct {
	Leaves      [][]byte      `json:"leaves"`
	Roots       [][]byte      `json:"roots"` // our root of each size 0..n
	Inclusion   []inclusion   `json:"inclusion"`
	Consistency []consistency `json:"consistency"`
	Notes       []signedNote  `json:"notes"`
}

type noteVerdict struct {
	OK    bool   `json:"ok"`
	Text  string `json:"text"`
	Error string `json:"error,omitempty"`
}

type response struct {
	Roots         [][]byte      `json:"roots"`
	RootsAgree    []bool        `json:"rootsAgree"`
	InclusionOK   []string      `json:"inclusionOk"`
	ConsistencyOK []string      `json:"consistencyOk"`
	GoInclusion   []inclusion   `json:"goInclusion"`
	GoConsistency []consistency `json:"goConsistency"`
	Notes         []noteVerdict `json:"notes"`
}

// hashStore is the tree's stored hashes in tlog's layout (StoredHashIndex).
type hashStore []tlog.Hash

func (s hashStore) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(s)) {
			return nil, fmt.Errorf("no stored hash %d", x)
		}
		out[i] = s[x]
	}
	return out, nil
}

func toHash(b []byte) (tlog.Hash, error) {
	var h tlog.Hash
	if len(b) != tlog.HashSize {
		return h, fmt.Errorf("a hash is %d bytes, not %d", tlog.HashSize, len(b))
	}
	copy(h[:], b)
	return h, nil
}

// ecdsaVerifier verifies type 0x02 signatures as c2sp.org/signed-note defines them: the key ID is
// SHA-256 of the DER SubjectPublicKeyInfo, the signature ASN.1 DER over SHA-256 of the text.
type ecdsaVerifier struct {
	name string
	hash uint32
	key  *ecdsa.PublicKey
}

func (v ecdsaVerifier) Name() string    { return v.name }
func (v ecdsaVerifier) KeyHash() uint32 { return v.hash }
func (v ecdsaVerifier) Verify(msg, sig []byte) bool {
	d := sha256.Sum256(msg)
	return ecdsa.VerifyASN1(v.key, d[:], sig)
}

// cosigVerifier verifies c2sp.org/tlog-cosignature v1 (type 0x04) signatures.
type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v cosigVerifier) Name() string    { return v.name }
func (v cosigVerifier) KeyHash() uint32 { return v.hash }
func (v cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	m := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	return ed25519.Verify(v.key, m, sig[8:])
}

func verifierOf(n signedNote) (note.Verifier, error) {
	switch n.Kind {
	case "ecdsa":
		k, err := x509.ParsePKIXPublicKey(n.Key)
		if err != nil {
			return nil, err
		}
		ek, ok := k.(*ecdsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("not an ECDSA key")
		}
		h := sha256.Sum256(n.Key)
		return ecdsaVerifier{n.Name, binary.BigEndian.Uint32(h[:4]), ek}, nil
	case "cosignature":
		h := sha256.Sum256(append(append([]byte(n.Name+"\n"), 0x04), n.Key...))
		return cosigVerifier{n.Name, binary.BigEndian.Uint32(h[:4]), ed25519.PublicKey(n.Key)}, nil
	}
	return nil, fmt.Errorf("unknown key kind %q", n.Kind)
}

func run() error {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		return err
	}
	var store hashStore
	for i, leaf := range req.Leaves {
		hs, err := tlog.StoredHashes(int64(i), leaf, store)
		if err != nil {
			return err
		}
		store = append(store, hs...)
	}
	n := int64(len(req.Leaves))
	var res response
	for size := int64(0); size <= n; size++ {
		th, err := tlog.TreeHash(size, store)
		if err != nil {
			return err
		}
		res.Roots = append(res.Roots, th[:])
		agree := size < int64(len(req.Roots)) && string(req.Roots[size]) == string(th[:])
		res.RootsAgree = append(res.RootsAgree, agree)
	}
	for _, p := range req.Inclusion {
		verdict := "ok"
		th, _ := tlog.TreeHash(p.Size, store)
		proof := make(tlog.RecordProof, 0, len(p.Proof))
		for _, b := range p.Proof {
			h, err := toHash(b)
			if err != nil {
				verdict = err.Error()
			}
			proof = append(proof, h)
		}
		if verdict == "ok" {
			if err := tlog.CheckRecord(proof, p.Size, th, p.Index, tlog.RecordHash(req.Leaves[p.Index])); err != nil {
				verdict = err.Error()
			}
		}
		res.InclusionOK = append(res.InclusionOK, verdict)
		own, err := tlog.ProveRecord(p.Size, p.Index, store)
		if err != nil {
			return err
		}
		g := inclusion{Index: p.Index, Size: p.Size}
		for _, h := range own {
			g.Proof = append(g.Proof, append([]byte(nil), h[:]...))
		}
		res.GoInclusion = append(res.GoInclusion, g)
	}
	for _, p := range req.Consistency {
		verdict := "ok"
		from, _ := tlog.TreeHash(p.From, store)
		to, _ := tlog.TreeHash(p.To, store)
		proof := make(tlog.TreeProof, 0, len(p.Proof))
		for _, b := range p.Proof {
			h, err := toHash(b)
			if err != nil {
				verdict = err.Error()
			}
			proof = append(proof, h)
		}
		if verdict == "ok" {
			if err := tlog.CheckTree(proof, p.To, to, p.From, from); err != nil {
				verdict = err.Error()
			}
		}
		res.ConsistencyOK = append(res.ConsistencyOK, verdict)
		own, err := tlog.ProveTree(p.To, p.From, store)
		if err != nil {
			return err
		}
		g := consistency{From: p.From, To: p.To}
		for _, h := range own {
			g.Proof = append(g.Proof, append([]byte(nil), h[:]...))
		}
		res.GoConsistency = append(res.GoConsistency, g)
	}
	for _, n := range req.Notes {
		v, err := verifierOf(n)
		if err != nil {
			res.Notes = append(res.Notes, noteVerdict{Error: err.Error()})
			continue
		}
		opened, err := note.Open([]byte(n.Note), note.VerifierList(v))
		if err != nil {
			res.Notes = append(res.Notes, noteVerdict{Error: err.Error()})
			continue
		}
		res.Notes = append(res.Notes, noteVerdict{OK: len(opened.Sigs) > 0, Text: opened.Text})
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "crosscheck:", err)
		os.Exit(1)
	}
}
