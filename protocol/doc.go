// Package protocol is the wire protocol that the ferry agent and ferry-relay share.
// It holds no agent or relay logic: only framing, message types, stream headers,
// error codes and version negotiation.
//
// # Transport
//
// The agent dials the relay over QUIC with ALPN "ferry/1" (ALPN). The session
// abstraction in package transport also allows a second transport (TCP+TLS with a
// stream multiplexer) carrying exactly the same frames.
//
// # Framing
//
// Every message is one frame:
//
//	+--------+----------------------+----------------+
//	| type 1 | length 4 (uint32 BE) | body (length)  |
//	+--------+----------------------+----------------+
//
// The reader checks length against its limit before allocating the body
// (MaxControlFrame on the control stream, MaxPreAuthFrame before authentication,
// MaxStreamFrame for stream headers). Control bodies are JSON objects;
// stream headers and stream responses are compact binary (see StreamHeader).
//
// # Protocol flow
//
//  1. The agent opens the control stream (the first bidirectional stream) and
//     sends Hello{version, min_version, agent_version, capabilities}.
//     The relay answers HelloResp with the selected version, or Error with
//     CodeVersionMismatch and a readable message, then closes the session.
//  2. The agent sends Auth{authtoken}. The relay answers AuthResp{session_id,
//     account} or Error{CodeAuthFailed} and closes the session.
//  3. Steady state. The agent sends Bind{tunnel_id, proto, domain, ...}; the relay
//     answers BindResp{tunnel_id, urls} or BindResp{tunnel_id, error}. The agent
//     sends Unbind{tunnel_id} to stop a tunnel (answered by UnbindResp). Either side
//     sends Heartbeat{seq} at any time; the peer echoes it as HeartbeatAck{seq}, and
//     the sender measures the round-trip time.
//  4. For every public connection (or pooled HTTP connection) the relay opens a new
//     bidirectional stream to the agent and writes a StreamHeader frame (tunnel id,
//     proto, client address, SNI/host) followed immediately by the client's bytes.
//     The agent dials the upstream and answers with a StreamResp frame (CodeOK, or
//     an error code and message such as CodeUpstreamRefused), then copies bytes both
//     ways. The relay reads the StreamResp before the first upstream byte, so the
//     exchange adds no round trip. Half-close (FIN) propagates in both directions.
//  5. Close: the relay sends GoAway{reason} before it shuts down; either side may
//     send Error{code, message} and close the session with that code.
//
// # Data connections (TCP fallback)
//
// On a TCP session the relay's AuthResp may carry data_key. The agent then also opens
// TLS connections to the same address with ALPN "ferry-data/1" (DataALPN), each starting
// with one DataJoin{session_id, key} frame, and keeps a few idle. Each carries exactly one
// stream, with no multiplexer framing: when a public connection arrives the relay takes
// an idle one and writes the StreamHeader on it, and from there it is step 4 above.
// Half-close is TLS close_notify; reset is a TCP reset. The session's end closes them.
// Relays without data_key, and agents that ignore it, use multiplexed streams only.
//
// # Version history
//
//	1  2026-11  first version: Hello, Auth, Bind/Unbind, Heartbeat, GoAway, Error,
//	            StreamHeader, StreamResp; later DataJoin and AuthResp.data_key (optional,
//	            ignored by older peers, so no version change).
package protocol
