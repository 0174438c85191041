module example.com/mailgateway/clients/go

go 1.19

// The oldest releases the generated code runs on (protoc-gen-go 1.28.1, protoc-gen-go-grpc 1.0: Debian 12's).
require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
