"""The admin service layer: admin credentials with roles, and every admin action audited."""
