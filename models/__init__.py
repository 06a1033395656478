"""maskopt.models: architectures and initialisations (filled by the model-zoo issue)."""
