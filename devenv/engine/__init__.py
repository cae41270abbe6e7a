"""The Docker engine as devenv sees it: `sdk` is the only module that imports the Docker SDK, `connect` reaches
an engine, `errors` is the one boundary where the SDK's exceptions become devenv errors."""
