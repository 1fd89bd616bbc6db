"""Trust: signatures (cosign's simple signing), referrers (SBOM, SLSA provenance) and their
verification. keys.py loads keys; simplesigning.py and attestations.py plan the exact bytes;
sign.py, referrers.py and verify.py talk to the registry."""
