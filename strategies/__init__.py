"""Mechanisms as Avalanche pieces: the training template, losses, and SupervisedPlugins
(replay memory, distillation, ...). Nothing here knows the CLI, files or the grid."""
