-- The databases of packaging/kilonova-distributed.conf, owned by the kilonova role the compose file creates.
CREATE DATABASE nova_cell1 OWNER kilonova;
CREATE DATABASE nova_cell0 OWNER kilonova;
CREATE DATABASE nova_api OWNER kilonova;
CREATE DATABASE placement OWNER kilonova;
CREATE DATABASE keystone OWNER kilonova;
CREATE DATABASE glance OWNER kilonova;
CREATE DATABASE neutron OWNER kilonova;
CREATE DATABASE cinder OWNER kilonova;
