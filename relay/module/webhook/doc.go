// Package webhook is the relay's webhook verification edge module: it checks that a
// request really comes from the configured webhook provider, by that provider's own
// signature scheme, before anything reaches the agent. A request that fails is answered
// by the relay with 403 and a short plain-text reason (see the Xero exception below).
//
// Config.Secret means what each provider gives you to verify with:
//
//	provider  Secret                               header(s) checked           tolerance
//	github    webhook secret                       X-Hub-Signature-256 (sha1   none
//	                                               X-Hub-Signature if absent)
//	gitlab    secret token                         X-Gitlab-Token              none
//	intercom  app client secret                    X-Hub-Signature (sha1=)     none
//	sendgrid  verification key (base64 DER, PKIX)  X-Twilio-Email-Event-       none
//	                                               Webhook-Signature/-Timestamp
//	shopify   app client secret                    X-Shopify-Hmac-Sha256       none
//	slack     signing secret                       X-Slack-Signature,          5 min
//	                                               X-Slack-Request-Timestamp
//	sns       the expected TopicArn (see below)    JSON body Signature         1 h
//	stripe    endpoint signing secret (whsec_...)  Stripe-Signature            5 min
//	twilio    auth token                           X-Twilio-Signature          none
//	xero      webhook key                          x-xero-signature            none
//
// Where a provider has no timestamp in what it signs, a captured request can be
// replayed; nothing at the edge can prevent that.
//
// SendGrid signs a timestamp but documents no window, and retries failed deliveries
// for up to a day without saying whether a retry is signed afresh, so no window is
// applied: a window could refuse legitimate retries.
//
// # AWS SNS
//
// SNS messages are signed with an AWS key, not with anything shared with the user, so
// for the sns provider Secret holds the TopicArn the endpoint subscribed to
// ("arn:aws:sns:us-east-1:123456789012:orders"). A message for any other topic is
// refused even when its signature is valid: anyone can create a topic of their own
// and subscribe this endpoint to it, and SNS would sign those messages too.
//
// The signature (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) is checked with
// the certificate at SigningCertURL. The default fetcher only fetches https URLs on
// hosts matching ^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$, checks that before any
// network access (and on redirects), and trusts the certificate because it came over
// verified TLS from that host, as the AWS SDK validators do. Messages whose
// Timestamp is more than an hour away from now are refused: SNS stops retrying an
// HTTP/S delivery within an hour.
//
// # Xero
//
// Xero's "intent to receive" check, which must pass before Xero will enable a webhook,
// requires 401 Unauthorized (not 403) for wrongly signed requests, so the xero
// provider answers failures with 401.
//
// # Twilio
//
// Twilio signs the URL it called, so the verifier rebuilds it as the public client
// used it: scheme from the TLS state (or X-Forwarded-Proto when the relay is not the
// TLS end), host from the Host header, path and query as sent. Because Twilio may sign
// with or without the port, both forms are tried. A POST body that is neither
// form-encoded (whose parameters Twilio signs) nor hashed in a bodySHA256 query
// parameter is not covered by the signature and is refused.
package webhook
