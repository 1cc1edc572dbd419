"""Groth16 over BLS12-381: scalar field, curve arithmetic, backends, R1CS and the proof system."""
