// Package oauth is the relay's login edge module for HTTPS endpoints: OAuth 2.0 with
// GitHub, Google, Microsoft or Facebook (the user's own application), OpenID Connect
// with any issuer, and SAML 2.0 as a service provider. It is an http.Handler
// middleware the relay puts in front of an endpoint's proxy:
//
//	m, err := oauth.New(oauth.Config{Provider: "github", ClientID: id, ClientSecret: secret,
//		AllowGitHubOrgs: []string{"ferrytunnel"}, CookieSecret: key})
//	handler := m.Wrap(proxy)
//
// # Flow
//
// Capture: a request without a valid session is answered 302 to the provider (SAML:
// to the IdP, or an auto-submitted form for IdPs with only the HTTP-POST binding).
// The login's state travels in a short-lived cookie (PREFIX_state_<first 16
// characters of the state>, 30 minutes, encrypted): the state parameter, the PKCE
// verifier (S256), the OIDC nonce or the SAML request ID, the host, and the path to
// come back to. Any method triggers capture; after login the browser comes back to
// the captured path and query with a GET.
//
// Callback: GET /oauth2/callback (SAML: POST /saml/acs) checks the state against its
// cookie (400 when missing, expired or different), exchanges the code with the PKCE
// verifier, identifies the user (OIDC: ID token signature, issuer, audience, expiry
// and nonce, then user info, which must name the same subject; GitHub: /user,
// /user/emails and, with org or team constraints, /user/orgs and /user/teams; Google,
// Microsoft, Facebook: their user info endpoint; SAML: the signed assertion in
// response to this login's request), applies the constraints (403 page when they
// refuse), sets the session cookie and redirects to the captured path.
//
// Refresh: after AuthCheckInterval (default and minimum 3 minutes) the next request
// re-checks the session with the provider: the access token is refreshed when it has
// expired (OIDC: always, when there is a refresh token), the user is fetched again,
// must be the same user, and the constraints are applied again. When the provider
// refuses (revoked grant, 4xx) or the constraints no longer let the user in, the
// session is deleted and the browser sent to log in again. When the provider cannot
// be reached (network, timeout, 5xx, rate limit), the request is answered 502 and
// the session kept for the next try. A changed set of constraints re-checks every
// session at its next request. SAML has no back channel: its re-check only applies
// the constraints again; the session ends at the assertion's SessionNotOnOrAfter, at
// MaxSessionDuration, or after DefaultSAMLSessionDuration, whichever is first.
//
// # Paths
//
// The middleware answers these itself on every host it serves; the upstream never
// sees them:
//
//	/oauth2/callback   the OAuth redirect URI: https://HOST/oauth2/callback
//	                   (register it with the provider; oauth and oidc only)
//	/oauth2/authorize  drop the session and log in again; ?next=/path says where to
//	                   go after (a path on this host, anything else is 400)
//	/oauth2/logout     delete the session cookie
//	/saml/acs          the SAML assertion consumer service (HTTP-POST binding)
//	/saml/metadata     the SP metadata to give the IdP (entity ID is this URL)
//
// # Headers
//
// On every request that reaches the upstream, headers whose name starts with
// "Ferry-Auth-" (any case) are removed and these set from the session:
//
//	Ferry-Auth-User-Id            the provider's id (OIDC sub, GitHub numeric id, SAML NameID)
//	Ferry-Auth-User-Name          full name (GitHub: name or login)
//	Ferry-Auth-User-Email         a verified email address (absent when there is none)
//	Ferry-Auth-Github-Login       github: the user's login
//	Ferry-Auth-Github-Organization github: the first organization that matched a constraint
//	Ferry-Auth-Github-Team        github: the first team ("org/slug") that matched a constraint
//
// Values are the provider's UTF-8 with control characters replaced by spaces. The
// middleware's own cookies (every name starting with the prefix) are removed from
// the Cookie header.
//
// # Constraints
//
// With no constraint, everyone the provider signs in gets in. Otherwise one match is
// enough: an email in AllowEmails (case-insensitive), an email whose domain is in
// AllowDomains, membership of an org in AllowGitHubOrgs or of a team in
// AllowGitHubTeams. Only verified addresses count: GitHub's verified emails (any of
// them, the primary first), OIDC and Google's email with email_verified true,
// Microsoft's userPrincipalName (its domain is verified by the tenant; the mail
// attribute is not trusted, see "nOAuth"), Facebook's email, the SAML assertion's
// email attribute (or an emailAddress NameID).
//
// # Cookies
//
// The session cookie (Config.CookiePrefix, default "ferry_session"; split over
// PREFIX_1.. when it exceeds 3800 bytes) is host-only, Path=/, Secure, HttpOnly,
// SameSite=Lax. The state cookie is SameSite=Lax too, except for SAML, where the
// IdP's cross-site POST needs SameSite=None. All are AES-256-GCM sealed with a key
// derived from Config.CookieSecret (HKDF-SHA256), bound to their purpose and to the
// provider, client id or IdP: a session from another configuration, another host or
// with any byte changed is refused and the user logs in again. The session holds
// the user's id, name, email, provider extras, the OAuth tokens (so re-checks need
// no server-side store), creation, last check and last activity times, and the end
// time.
package oauth
