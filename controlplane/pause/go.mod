// The dev cluster's sandbox (pause) image binary: no dependencies, built static.
module dgm.io/controlplane/pause

go 1.26.0
