module dsv4.dev/dsv4

go 1.19
