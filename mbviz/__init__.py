"""mbviz: the teaching and exploration layer of MultiBalance Lab."""
