"""(pytest imports this first, putting this directory on the path: the tests import
the plugin as an installed package would be imported.)"""
