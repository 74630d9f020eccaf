package wasm

import (
	"encoding/binary"
	"errors"
	"sort"
)

// coalesceData returns module with its active data segments merged into as
// few as fit within maxGap of each other, the zero bytes between them
// filled in; or module itself when it cannot tell that is safe.
//
// Go's linker splits a program's data around every run of zeros: a small
// Go guest has some 28,000 data segments, a client-go one 100,000, and
// wazero evaluates each one's offset and copies it, one by one, at every
// instantiation, most of a small call's cost. A fresh memory is all zeros,
// so the merged segments leave it byte for byte as the original ones would.
// Segment indexes are unobservable without a data count section (which
// memory.init and data.drop need), so only modules without one, whose every
// segment is active in memory 0 at a constant offset, with no two
// overlapping, are rewritten.
func coalesceData(module []byte) []byte {
	out, err := rewriteData(module)
	if err != nil {
		return module
	}
	return out
}

const (
	sectionMemory    = 5
	sectionData      = 11
	sectionDataCount = 12
	maxGap           = 4096
	opI32Const       = 0x41
	opEnd            = 0x0b
)

var errCannotCoalesce = errors.New("data segments cannot be coalesced")

type segment struct {
	offset uint32
	init   []byte
}

func rewriteData(module []byte) ([]byte, error) {
	if len(module) < 8 || string(module[:4]) != "\x00asm" {
		return nil, errCannotCoalesce
	}
	var dataStart, dataEnd int
	var body []byte
	for p := 8; p < len(module); {
		id := module[p]
		size, n := binary.Uvarint(module[p+1:])
		if n <= 0 || uint64(len(module)-p-1-n) < size {
			return nil, errCannotCoalesce
		}
		end := p + 1 + n + int(size)
		switch id {
		case sectionDataCount:
			return nil, errCannotCoalesce
		case sectionData:
			dataStart, dataEnd, body = p, end, module[p+1+n:end]
		}
		p = end
	}
	if body == nil {
		return nil, errCannotCoalesce
	}
	segs, err := parseSegments(body)
	if err != nil || len(segs) < 2 {
		return nil, errCannotCoalesce
	}
	// The zeros filled in are bounded by the data itself, so a module of
	// many tiny segments far apart cannot make the server allocate more
	// than twice what the module holds.
	var data uint64
	for _, s := range segs {
		data += uint64(len(s.init))
	}
	fillBudget := data + maxGap
	merged := []segment{{offset: segs[0].offset, init: append([]byte(nil), segs[0].init...)}}
	for _, s := range segs[1:] {
		last := &merged[len(merged)-1]
		end := uint64(last.offset) + uint64(len(last.init))
		switch gap := uint64(s.offset) - end; {
		case uint64(s.offset) < end:
			return nil, errCannotCoalesce // overlapping
		case gap <= maxGap && gap <= fillBudget:
			fillBudget -= gap
			last.init = append(last.init, make([]byte, uint64(s.offset)-end)...)
			last.init = append(last.init, s.init...)
		default:
			merged = append(merged, segment{offset: s.offset, init: append([]byte(nil), s.init...)})
		}
	}
	sec := binary.AppendUvarint(nil, uint64(len(merged)))
	for _, s := range merged {
		sec = append(sec, 0, opI32Const)
		sec = appendSleb32(sec, int32(s.offset))
		sec = append(sec, opEnd)
		sec = binary.AppendUvarint(sec, uint64(len(s.init)))
		sec = append(sec, s.init...)
	}
	out := make([]byte, 0, len(module))
	out = append(out, module[:dataStart]...)
	out = append(out, sectionData)
	out = binary.AppendUvarint(out, uint64(len(sec)))
	out = append(out, sec...)
	return append(out, module[dataEnd:]...), nil
}

// parseSegments reads a data section whose every segment is active in
// memory 0 with an i32.const offset, or fails.
func parseSegments(body []byte) ([]segment, error) {
	count, n := binary.Uvarint(body)
	if n <= 0 {
		return nil, errCannotCoalesce
	}
	p := body[n:]
	// Each segment takes at least 5 bytes: a count beyond that is a lie,
	// and must not size an allocation.
	if count > uint64(len(p))/5 {
		return nil, errCannotCoalesce
	}
	segs := make([]segment, 0, count)
	for range count {
		if len(p) < 2 || p[0] != 0 || p[1] != opI32Const {
			return nil, errCannotCoalesce
		}
		off, n := readSleb32(p[2:])
		if n <= 0 || len(p) < 2+n+1 || p[2+n] != opEnd || off < 0 {
			return nil, errCannotCoalesce
		}
		p = p[2+n+1:]
		size, n := binary.Uvarint(p)
		if n <= 0 || uint64(len(p)-n) < size {
			return nil, errCannotCoalesce
		}
		segs = append(segs, segment{offset: uint32(off), init: p[n : n+int(size)]})
		p = p[n+int(size):]
	}
	if len(p) != 0 {
		return nil, errCannotCoalesce
	}
	// Segments that do not overlap (rewriteData checks) give the same
	// memory in any order; Go's linker writes them in more than one run.
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].offset < segs[j].offset })
	return segs, nil
}

func readSleb32(b []byte) (int32, int) {
	var result int64
	var shift uint
	for i := 0; i < len(b) && i < 5; i++ {
		c := b[i]
		result |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				result |= -1 << shift
			}
			return int32(result), i + 1
		}
	}
	return 0, 0
}

func appendSleb32(b []byte, v int32) []byte {
	x := int64(v)
	for {
		c := byte(x & 0x7f)
		x >>= 7
		if x == 0 && c&0x40 == 0 || x == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// splitData takes a module's data out of it: the module without data, and
// the segments that make its memory at instantiation (size bytes, zeros
// but for them). The backend writes them into an image it maps
// copy-on-write under each instance (memory.go), so no instantiation copies
// data at all. ok is false when the module is not one whose data can be
// moved so (see coalesceData), or its initial memory is over limit bytes:
// such a module fails to compile anyway, and its image is never made.
func splitData(module []byte, limit uint64) (stripped []byte, segs []segment, size uint64, ok bool) {
	var dataStart, dataEnd int
	var body []byte
	var minPages uint64
	memories := 0
	if len(module) < 8 || string(module[:4]) != "\x00asm" {
		return nil, nil, 0, false
	}
	for p := 8; p < len(module); {
		id := module[p]
		size, n := binary.Uvarint(module[p+1:])
		if n <= 0 || uint64(len(module)-p-1-n) < size {
			return nil, nil, 0, false
		}
		end := p + 1 + n + int(size)
		sec := module[p+1+n : end]
		switch id {
		case sectionDataCount:
			return nil, nil, 0, false
		case sectionMemory:
			count, k := binary.Uvarint(sec)
			if k <= 0 || count != 1 || len(sec) < k+2 {
				return nil, nil, 0, false
			}
			memories++
			limits := sec[k]
			if limits != 0 && limits != 1 { // shared or 64-bit memories: no
				return nil, nil, 0, false
			}
			if minPages, k = binary.Uvarint(sec[k+1:]); k <= 0 {
				return nil, nil, 0, false
			}
		case sectionData:
			dataStart, dataEnd, body = p, end, sec
		}
		p = end
	}
	if body == nil || memories != 1 {
		return nil, nil, 0, false
	}
	segs, err := parseSegments(body)
	if err != nil || minPages > limit/65536 {
		return nil, nil, 0, false
	}
	for i, s := range segs {
		end := uint64(s.offset) + uint64(len(s.init))
		if i > 0 && uint64(s.offset) < uint64(segs[i-1].offset)+uint64(len(segs[i-1].init)) {
			return nil, nil, 0, false // overlapping
		}
		size = max(size, end)
	}
	if size > minPages*65536 {
		return nil, nil, 0, false
	}
	stripped = make([]byte, 0, len(module)-(dataEnd-dataStart))
	stripped = append(stripped, module[:dataStart]...)
	return append(stripped, module[dataEnd:]...), segs, size, true
}
