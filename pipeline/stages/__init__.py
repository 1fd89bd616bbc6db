"""The stages, in order. Each reads its predecessor's outputs from the work directory's stamps,
so a stage can run alone (`bootc-pipeline disk`) after an earlier run of the ones before it."""

ORDER = ["build", "disk", "compress", "push"]
