"""The dealer role of two-party secure training: ``vtrain-dealer serve`` hands each party its preprocessing
shares (docs/MPC.md, "Preprocessing"). It never sees data or outputs; it must not collude with either party."""
