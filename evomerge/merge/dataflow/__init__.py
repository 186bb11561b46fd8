"""Data-flow recipes run and written: the path model (layers shared by reference, nothing copied)
and folding the path's scales into a plain checkpoint or a mergekit ``passthrough`` config."""
