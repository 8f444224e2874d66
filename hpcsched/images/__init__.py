"""The training image on every compute node: build it, put it where every node finds it (an
archive or a read-only image store on the shared file system), load it on a node's first use,
and check which nodes have it (docs/real-cluster.md, "The image on every node")."""
