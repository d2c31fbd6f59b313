"""EnvDrop-style follower and speaker agents, training, back-translation, and the random / stop / shortest baselines."""
