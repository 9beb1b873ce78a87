"""Training workloads argus runs as Ray jobs, and the data they ship with."""
