package router

import (
	"errors"

	"github.com/anyguard/anyguard/packet"
)

// Drop reasons. Each dropped packet is counted under exactly one of them.
type DropReason uint8

const (
	DropTruncated     DropReason = iota // shorter than its header or its length field says
	DropBadHeader                       // bad IP version, header length or length field
	DropTTLExpired                      // TTL or hop limit would reach zero
	DropNoRoute                         // no route for the destination
	DropSourceInvalid                   // source address not allowed on the ingress port
	DropSplitHorizon                    // arrived from the backbone, routed back into it
	DropLoop                            // routed back out of the egress it came in on
	DropPortError                       // the next hop's port refused the packet
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	DropTruncated:     "truncated",
	DropBadHeader:     "bad_header",
	DropTTLExpired:    "ttl_expired",
	DropNoRoute:       "no_route",
	DropSourceInvalid: "source_invalid",
	DropSplitHorizon:  "split_horizon",
	DropLoop:          "loop",
	DropPortError:     "port_error",
}

// String returns the metric label of the reason.
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}

// DropReasons lists every reason, for exporting counters.
func DropReasons() []DropReason {
	rs := make([]DropReason, numDropReasons)
	for i := range rs {
		rs[i] = DropReason(i)
	}
	return rs
}

// dropReason is the drop reason of a packet that packet.Parse refused.
func dropReason(err error) DropReason {
	if errors.Is(err, packet.ErrTruncated) {
		return DropTruncated
	}
	return DropBadHeader // ErrVersion, ErrHeaderLen, ErrLength
}
