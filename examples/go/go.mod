module example.com/mailgateway/examples/go

go 1.19

// The generated client from this checkout; `go mod tidy` adds grpc-go and genproto (errdetails) with go.sum.
require example.com/mailgateway/clients/go v0.0.0

replace example.com/mailgateway/clients/go => ../../clients/go
