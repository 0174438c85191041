"""What the tests and the benchmarks share: real peers on loopback (the SNS signing host, a TCP proxy a test can cut,
moto's server, TLS certificates), SES event samples, and starting and waiting for processes. Not installed with the
package; the SES v2 stand-in lives in gateway/dev/ (mailgw dev aws serves it too)."""
