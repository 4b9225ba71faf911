"""The lab's SMTP sink: accepts every message over SMTP, stores each as a file, lists them over HTTP on loopback."""
