// Package events delivers the relay's events to the destinations of each account's event
// subscriptions: signed HTTP webhooks and JSON-lines files.
//
// # Flow
//
// The relay calls [Bus.Publish] where something happens (a tunnel starts or stops, an
// HTTP request completes, a TCP or TLS connection closes). Publish never blocks: it looks
// up the subscriptions of the event's account that select its type (an atomic snapshot
// swapped by [Bus.SetSubscriptions]) and puts the event on the bounded queue of each of
// their destinations. A full queue drops the event and counts it (see [Bus.Stats]).
//
// Each destination has its own goroutine. It takes events off its queue in batches (up to
// Config.BatchSize, waiting at most Config.FlushInterval for a batch to fill), keeps only
// the subscription's selected fields, and delivers the batch. A failed delivery is
// retried with backoff up to Config.MaxRetries times, then counted as failed.
//
// # What a destination receives
//
// Every event is one JSON object, a [Record]:
//
//	{"id":"ev_5c1f0a9b3e27_1f","subscription_id":"esb_123","account_id":"acc_1",
//	 "event_type":"http_request_complete","event_timestamp":"2026-05-06T07:08:09.123Z",
//	 "object":{"method":"GET","path":"/","status":200,"duration_ms":12.5,...}}
//
// The id is the same in every destination and every retry of one event, so a receiver
// can drop duplicates. A file destination appends one record per line (the file is
// created 0600, and reopened when it was removed or rotated). A webhook destination POSTs
// a JSON array of records (Content-Type: application/json); a 2xx answer means delivered,
// 429 and 5xx answers and network errors are retried (a Retry-After in seconds is
// honoured, up to a minute), any other status is a permanent failure; redirects are not
// followed.
//
// # Verifying a webhook
//
// Each webhook request carries a Ferry-Signature header:
//
//	Ferry-Signature: t=1778051289,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//
// t is the Unix time of the attempt (each retry is signed anew), v1 the hex-encoded
// HMAC-SHA256, keyed with the destination's secret, of the string t + "." + body, where
// body is the raw request body, byte for byte. To verify, as with Stripe's webhooks:
//
//  1. split the header on "," and each part on the first "=", and read t and v1;
//  2. compute hex(HMAC-SHA256(secret, t + "." + body)) over the raw body, before any
//     JSON decoding;
//  3. compare it with v1 in constant time (hmac.Equal);
//  4. refuse a t more than a few minutes from your clock, so a captured request cannot
//     be replayed later.
//
// [VerifySignature] does exactly this for Go receivers.
package events
