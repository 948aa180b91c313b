"""envfactory.agents"""
