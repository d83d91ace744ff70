# Passwords: alice "wonderland", bob "builder" (bcrypt, cost 4 to keep tests fast).
user "alice" {
  password = "$2a$04$KSbLR1x52L4HdjFntm8.NuoQ16xVd4PWGU.SjnZpyNGfov2z2xyei"
  groups   = ["admins", "devices"]
}

user "bob" {
  password = "$2a$04$EuxCkUyr0fUU28P9SqVYAuU/e8P6mCMi4AsxiYbrUN/blx51Vqm42"
}
