-- Which ACME challenge an answer is for: 'http-01' (answered by token on the plain listener) or
-- 'tls-alpn-01' (a certificate served by hostname on the TLS listener, RFC 8737).
ALTER TABLE acme_challenges ADD COLUMN kind TEXT NOT NULL DEFAULT 'http-01';
