// Package sni reads the TLS ClientHello at the start of a public connection without consuming it,
// so that the relay can route by server name and then either pass the raw stream through
// untouched (to an agent that terminates TLS itself) or hand it to crypto/tls.
//
// # Flow
//
//	hello, conn, err := sni.Peek(raw, 5*time.Second, sni.DefaultMaxBytes)
//	if err != nil { /* log; optionally sni.WriteAlert(conn, ...); conn.Close() */ }
//	route := lookup(hello.ServerName)       // already normalised with sni.Normalize
//	io.Copy(upstream, conn)                 // sees the stream from its first byte
//	// or: tls.Server(conn, cfg).Handshake()
//
// Peek reads from the connection until [Parse] can decode a whole ClientHello and returns a
// [*Conn] that replays every byte read so far before reading from the network again. Once the
// replay buffer is drained, Read goes straight to the underlying connection, and WriteTo/ReadFrom
// forward to it so io.Copy between two TCP connections can still use splice(2). CloseWrite is
// forwarded for half-closes.
//
// Errors are sorted so the caller can decide what to answer, all testable with errors.Is:
// [ErrTimeout] (no complete ClientHello before the deadline), [ErrTooLarge] (more than maxBytes
// would be needed), [ErrNotTLS] (the first bytes are not a TLS handshake record, e.g. plain HTTP;
// the returned conn still replays them, so the caller may answer with an HTTP redirect),
// [ErrMalformed] (a TLS handshake record whose ClientHello is invalid), and io.EOF /
// io.ErrUnexpectedEOF when the client closes early. [WriteAlert] writes a fatal TLS alert, for
// example [AlertUnrecognizedName] when no tunnel serves the name.
//
// # Limits
//
//   - A record body longer than 16384+256 bytes is malformed, as is an empty handshake record or
//     a non-handshake record (alert, change_cipher_spec, ...) in the middle of the ClientHello.
//   - A ClientHello message longer than the largest possible one (131396 bytes of body, every
//     vector at its maximum) is malformed; the declared length is checked before it is used.
//   - Peek never buffers more than maxBytes ([DefaultMaxBytes] if maxBytes <= 0), and fails as
//     soon as the declared lengths prove the hello cannot fit, without waiting for the bytes.
//     Parse allocates at most len(data) bytes, whatever the lengths inside claim.
//   - The server name must be printable ASCII without empty labels (RFC 6066 §3); it is
//     lower-cased (ASCII only, so "\u212A" never folds to "k") and one trailing dot is removed.
//     More than one host_name, or a duplicate server_name, ALPN or supported_versions extension,
//     is malformed, so the relay and the TLS endpoint behind it cannot disagree on the name.
//   - SSL 2.0-compatible hellos, DTLS and QUIC are not handled. With Encrypted Client Hello the
//     server name seen here is the outer (public) one.
package sni
