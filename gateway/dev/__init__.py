"""A local AWS for development and the tests: the SES v2 stand-in and moto's server with its fixes."""
