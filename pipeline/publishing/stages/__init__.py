"""The stages, in order: build, disk, compress, push. Each reads its predecessor's outputs from
the work directory's stamps, so a stage can run alone (`bootc-pipeline disk`) after an earlier
run of the ones before it."""
