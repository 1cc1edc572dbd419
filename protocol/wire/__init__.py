"""Wire code generated from proto/vtrain/v1 by `make proto` (do not edit the *_pb2*.py files)."""
