"""What methods are measured on (streams, models, metrics) and the machinery that measures
(the cell runner, the grid runner, the report)."""

import warnings

# Avalanche imports qpsolvers, which warns on every start that no QP solver is installed;
# no method of this suite solves a QP (GEM-style methods would), so keep the CLI quiet.
warnings.filterwarnings("ignore", message="no QP solver found")
