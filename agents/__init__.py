"""EnvDrop-style follower and speaker agents, training and back-translation."""
