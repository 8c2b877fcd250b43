"""What leaves the machine or comes back: model cards (rendering and reading a model folder),
loading a saved model with the right Auto class, and pushing to the Hub. Imports only ``core`` (level 1)."""
