"""From dev to prod: the production image from the same base digest and lock as the dev image,
without the dev tooling, with the project at a recorded commit, gated by the spec's tests, with
provenance labels and a CycloneDX SBOM, reproducible, and pushed (then pulled back) by digest."""
