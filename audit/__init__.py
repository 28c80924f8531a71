"""The own-dataset noise audit's analysis: suspicion scores, the noise share (against canaries or trusted labels), the
given → true table and the verdict, from cross-fitted runs already in the database (no torch)."""
